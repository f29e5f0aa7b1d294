-- HAProxy's map of the team `@current` means for each personal API key, from PostHog's
-- PostgreSQL, for dmjd-teams.cfg: one line "<hex sha256 of the key> <team id>".
--
-- The team is PostHog's User.team for the key's owner (docs/api.md): the
-- user's current team if it exists; else the lowest-id team of the user's organization, which
-- is the current organization when one is set, else the lowest-UUID organization among the
-- user's memberships; and only when the user is a member of that organization. Keys whose
-- owner resolves to no team are left out (every replica answers them "Project not found.").
--
-- Regenerate it when keys or users change, e.g. from cron, next to `dmj sync`, with the
-- password in ~/.pgpass (mode 0600) rather than on the command line, and sslmode=verify-full
-- so that only the real server (its certificate checked against root.crt) is believed:
--   psql -At -f current-team.sql "host=pg.internal dbname=posthog user=dmj_reader
--        sslmode=verify-full sslrootcert=/etc/dmj/pg-root.crt" > /etc/haproxy/dmj-current-team.map.new &&
--   mv /etc/haproxy/dmj-current-team.map.new /etc/haproxy/dmj-current-team.map &&
--   systemctl reload haproxy
-- (or, without a reload, one key at a time through the runtime API:
--   echo "set map /etc/haproxy/dmj-current-team.map <hash> <team>" | socat stdio <socket>).

select substr(k.secure_value, 8) || ' ' || resolved.team_id
from posthog_personalapikey k
join posthog_user u on u.id = k.user_id
cross join lateral (
    select case
        when u.current_organization_id is not null then (
            select o.id from posthog_organization o where o.id = u.current_organization_id)
        else (
            select m.organization_id
            from posthog_organizationmembership m
            join posthog_organization o on o.id = m.organization_id
            where m.user_id = u.id
            order by m.organization_id
            limit 1)
    end as organization_id
) org
cross join lateral (
    select coalesce(
        (select t.id from posthog_team t where t.id = u.current_team_id),
        (select t.id
         from posthog_team t
         where t.organization_id = org.organization_id
           and exists (select 1 from posthog_organizationmembership m
                       where m.organization_id = t.organization_id and m.user_id = u.id)
         order by t.id
         limit 1)) as team_id
) resolved
where k.secure_value like 'sha256$%'
  and resolved.team_id is not null
order by 1;

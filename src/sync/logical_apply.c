/** The stream's changes applied to the store: relations remembered, rows of the job table
 * upserted through the import parser (or deleted when their team is not followed), deletes,
 * TRUNCATE, and identity tables marking an identity pass as due. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "dmj/store.h"
#include "dmj/uuid.h"
#include "logical_impl.h"

static struct relation *find_relation(struct follower *f, uint32_t relid)
{
    for (size_t i = 0; i < f->nrels; i++) {
        if (f->rels[i].relid == relid)
            return &f->rels[i];
    }
    return NULL;
}

static bool text_is(struct pgo_text t, const char *s)
{
    return t.len == strlen(s) && memcmp(t.ptr, s, t.len) == 0;
}

static bool is_identity_table(struct pgo_text name)
{
    static const char *const tables[] = {"posthog_organization", "posthog_team", "posthog_user",
                                         "posthog_organizationmembership",
                                         "posthog_personalapikey"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        if (text_is(name, tables[i]))
            return true;
    }
    return false;
}

int dmj__logical_on_relation(struct follower *f, const struct pgo_message *m)
{
    struct relation *rel = find_relation(f, m->relid);
    if (!rel) {
        struct relation *p = realloc(f->rels, (f->nrels + 1) * sizeof *p);
        if (!p)
            return -ENOMEM;
        f->rels = p;
        rel = &f->rels[f->nrels++];
    } else {
        free(rel->cols);
        free(rel->names);
    }
    memset(rel, 0, sizeof *rel);
    rel->relid = m->relid;
    rel->id_col = rel->team_col = -1;
    rel->kind = text_is(m->relname, JOB_TABLE)           ? REL_JOBS
                : is_identity_table(m->relname)         ? REL_IDENTITY
                                                        : REL_OTHER;
    rel->cols = calloc(m->ncols ? m->ncols : 1, sizeof *rel->cols);
    rel->names = malloc(m->columns_len + 1);
    if (!rel->cols || !rel->names)
        return -ENOMEM;
    size_t pos = 0, used = 0;
    for (uint16_t i = 0; i < m->ncols; i++) {
        struct pgo_column c;
        if (pgo_next_column(m, &pos, &c) != 0)
            return DMJ_EINVAL; /* checked by pgo_parse */
        memcpy(rel->names + used, c.name.ptr, c.name.len);
        rel->cols[i] = c;
        rel->cols[i].name.ptr = rel->names + used;
        used += c.name.len;
        if (text_is(c.name, "id"))
            rel->id_col = i;
        else if (text_is(c.name, "team_id"))
            rel->team_col = i;
    }
    rel->ncols = m->ncols;
    if (rel->kind == REL_JOBS && (rel->id_col < 0 || rel->team_col < 0))
        return dmj__sync_fail(f->s, "stream", JOB_TABLE " has no id or team_id column");
    return 0;
}

static int cmp_team(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Whether a row's team_id (text, or NULL) is one this store follows (--teams, --teams-mod). */
static bool team_followed(const struct follower *f, const struct pgo_value *v)
{
    if (v->kind != 't' || v->text.len == 0 || v->text.len > 11)
        return false;
    char text[12];
    memcpy(text, v->text.ptr, v->text.len);
    text[v->text.len] = '\0';
    char *end;
    errno = 0;
    long team = strtol(text, &end, 10);
    if (errno || *end || team < INT32_MIN || team > INT32_MAX)
        return false;
    int32_t t = (int32_t)team;
    if (f->s->o.teams_array && !bsearch(&t, f->teams, f->nteams, sizeof t, cmp_team))
        return false;
    return f->s->o.mod_n <= 0 || t % f->s->o.mod_n == f->s->o.mod_r;
}

static int delete_job(struct follower *f, const struct pgo_value *idv)
{
    uint8_t id[16];
    if (idv->kind != 't' || dmj_uuid_parse(idv->text.ptr, idv->text.len, id) != 0)
        return dmj__sync_fail(f->s, "stream", "a row's id is not a uuid");
    int rc = dmj__sync_write_start(f->s);
    if (rc == 0)
        rc = dmj_write_delete_job(f->s->w, id);
    if (rc == 0)
        f->s->deleted++;
    return rc == DMJ_ENOTFOUND ? 0 : rc;
}

/* The row as PostgreSQL has it now, for an update that did not send a TOASTed value it kept:
 * a later change of the row follows in the stream, so the store still ends where the table
 * does. Absent (deleted since): nothing to write, the deletion follows. */
static int write_row_from_table(struct follower *f, const struct pgo_value *idv)
{
    char id[DMJ_UUID_TEXT_LEN + 1];
    snprintf(id, sizeof id, "%.*s", (int)idv->text.len, idv->text.ptr);
    const char *params[1] = {id};
    PGresult *r;
    int rc = dmj__sync_pg_exec(f->s, "SELECT row_to_json(j)::text FROM " JOB_TABLE " j"
                                     " WHERE j.id = $1::uuid",
                               1, params, 0, &r);
    if (rc != 0)
        return rc;
    rc = dmj__sync_feed_rows(f->s, r);
    PQclear(r);
    return rc;
}

static int upsert_job(struct follower *f, const struct relation *rel, const struct pgo_tuple *t)
{
    if (t->ncols != rel->ncols)
        return dmj__sync_fail(f->s, "stream", "a row does not match its relation");
    const struct pgo_value *idv = &t->values[rel->id_col];
    if (!team_followed(f, &t->values[rel->team_col]))
        return delete_job(f, idv); /* no team, or one this store does not follow */
    dmj_buf_reset(&f->json);
    int rc = pgo_row_json(&f->json, rel->cols, t);
    if (rc == DMJ_ENOTFOUND)
        return idv->kind == 't' ? write_row_from_table(f, idv)
                                : dmj__sync_fail(f->s, "stream", "a row's id was not sent");
    if (rc != 0)
        return rc == DMJ_EINVAL ? dmj__sync_fail(f->s, "stream", "a value does not convert") : rc;
    rc = dmj_buf_addc(&f->json, '\n');
    if (rc == 0 && !f->imp)
        rc = dmj__sync_import_start(f->s, &f->imp);
    return rc == 0 ? dmj_import_feed(f->imp, f->json.data, f->json.len) : rc;
}

static int each_store_id(void *ctx, const struct dmj_job *job)
{
    return dmj__sync_ids_add(ctx, job->id);
}

/* TRUNCATE of the job table: every job the store holds or the open transaction wrote. */
static int truncate_jobs(struct follower *f)
{
    struct ids all = {0};
    int rc = dmj_store_each_job(f->s->store, -1, each_store_id, &all);
    for (size_t i = 0; rc == 0 && i < f->written.n; i++)
        rc = dmj__sync_ids_add(&all, f->written.v[i]);
    for (size_t i = 0; rc == 0 && i < all.n; i++) {
        rc = dmj__sync_write_start(f->s);
        if (rc == 0)
            rc = dmj_write_delete_job(f->s->w, all.v[i]);
        if (rc == 0)
            f->s->deleted++;
        else if (rc == DMJ_ENOTFOUND)
            rc = 0;
    }
    free(all.v);
    return rc;
}

int dmj__logical_on_change(struct follower *f, const struct pgo_message *m)
{
    if (m->kind == PGO_TRUNCATE) {
        int rc = 0;
        for (uint32_t i = 0; rc == 0 && i < m->nrelids; i++) {
            struct relation *rel = find_relation(f, pgo_relid_at(m, i));
            if (rel && rel->kind == REL_IDENTITY) {
                f->identities_dirty = true;
            } else if (rel && rel->kind == REL_JOBS) {
                rc = truncate_jobs(f);
                f->group_changes++;
            }
        }
        return rc;
    }
    struct relation *rel = find_relation(f, m->relid);
    if (!rel)
        return dmj__sync_fail(f->s, "stream", "a change to a table the stream did not describe");
    if (rel->kind == REL_IDENTITY)
        f->identities_dirty = true;
    if (rel->kind != REL_JOBS)
        return 0;
    f->group_changes++;
    const struct pgo_tuple *old = &m->old;
    if (m->has_old && old->ncols != rel->ncols)
        return dmj__sync_fail(f->s, "stream", "a row does not match its relation");
    if (m->kind == PGO_DELETE)
        return delete_job(f, &old->values[rel->id_col]);
    int rc = 0;
    const struct pgo_value *new_id = &m->new_row.values[rel->id_col];
    if (m->kind == PGO_UPDATE && m->has_old && m->new_row.ncols == rel->ncols &&
        old->values[rel->id_col].kind == 't' &&
        (new_id->kind != 't' || new_id->text.len != old->values[rel->id_col].text.len ||
         memcmp(new_id->text.ptr, old->values[rel->id_col].text.ptr, new_id->text.len) != 0))
        rc = delete_job(f, &old->values[rel->id_col]); /* the id itself changed */
    return rc == 0 ? upsert_job(f, rel, &m->new_row) : rc;
}

int dmj__logical_parse_teams(struct follower *f)
{
    const char *p = f->s->o.teams_array;
    if (!p)
        return 0;
    size_t cap = strlen(p) / 2 + 1;
    f->teams = malloc(cap * sizeof *f->teams);
    if (!f->teams)
        return -ENOMEM;
    for (p++; *p && *p != '}' && f->nteams < cap;) {
        char *end;
        f->teams[f->nteams++] = (int32_t)strtol(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p != '}')
            break;
    }
    qsort(f->teams, f->nteams, sizeof *f->teams, cmp_team);
    return 0;
}

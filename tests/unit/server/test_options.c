/** dmjd's command line: defaults, every option's range, and refusals with status 2. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "options.h"

static int parse(struct dmjd_options *o, const char *a1, const char *a2, const char *a3)
{
    char *argv[5] = {"dmjd", (char *)a1, (char *)a2, (char *)a3, NULL};
    int argc = 1 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL);
    optind = 0; /* glibc: start over */
    return dmjd_options_parse(argc, argv, o);
}

static void test_defaults(void)
{
    struct dmjd_options o;
    unsetenv("DMJ_DB");
    CHECK_EQ_INT(parse(&o, NULL, NULL, NULL), 0);
    CHECK_EQ_STR(o.db, "./dmj-data");
    CHECK_EQ_INT(o.n_listen, 1);
    CHECK_EQ_STR(o.listen[0], DMJD_DEFAULT_LISTEN);
    CHECK(o.threads >= 1);
    CHECK_EQ_INT(o.send_timeout, 30);
    CHECK_EQ_INT(o.header_timeout, 10);
    CHECK_EQ_INT(o.max_held, 4096);
    CHECK_EQ_INT(o.streams_per_key, 8);
    CHECK_EQ_INT(o.rate_keys, 4096);
    CHECK(o.max_connections == 0); /* from the open-file limit */
    CHECK(!o.metrics_on_api);
    CHECK(o.metrics_listen == NULL && o.auth_fail_limit == NULL);
    CHECK_EQ_INT(o.n_trusted_proxies, 0);
    setenv("DMJ_DB", "/srv/store", 1);
    CHECK_EQ_INT(parse(&o, NULL, NULL, NULL), 0);
    CHECK_EQ_STR(o.db, "/srv/store");
    unsetenv("DMJ_DB");
}

static void test_hostile_client_options(void)
{
    struct dmjd_options o;
    CHECK_EQ_INT(parse(&o, "--max-connections", "256", "--metrics-on-api"), 0);
    CHECK(o.max_connections == 256 && o.metrics_on_api);
    CHECK_EQ_INT(parse(&o, "--send-timeout", "2", NULL), 0);
    CHECK_EQ_INT(o.send_timeout, 2);
    CHECK_EQ_INT(parse(&o, "--header-timeout", "86400", NULL), 0);
    CHECK_EQ_INT(o.header_timeout, 86400);
    CHECK_EQ_INT(parse(&o, "--max-held", "5", NULL), 0);
    CHECK_EQ_INT(o.max_held, 5);
    CHECK_EQ_INT(parse(&o, "--streams-per-key", "0", NULL), 0); /* no per-key bound */
    CHECK_EQ_INT(o.streams_per_key, 0);
    CHECK_EQ_INT(parse(&o, "--trusted-proxy", "10.0.0.1", NULL), 0);
    CHECK_EQ_INT(o.n_trusted_proxies, 1);
    CHECK_EQ_INT(parse(&o, "--trusted-proxy", "::1", NULL), 0);
    CHECK_EQ_STR(o.trusted_proxies[0], "::1");
    CHECK_EQ_INT(parse(&o, "--auth-fail-limit", "30/minute", NULL), 0);
    CHECK_EQ_STR(o.auth_fail_limit, "30/minute");
    CHECK_EQ_INT(parse(&o, "--rate-limit-keys", "16", NULL), 0);
    CHECK_EQ_INT(o.rate_keys, 16);
    CHECK_EQ_INT(parse(&o, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(o.max_connections_per_address, 0); /* no bound unless asked */
    CHECK_EQ_INT(parse(&o, "--max-connections-per-address", "3", NULL), 0);
    CHECK_EQ_INT(o.max_connections_per_address, 3);
    CHECK_EQ_INT(parse(&o, NULL, NULL, NULL), 0);
    CHECK(!o.offset_api); /* the cursor generation unless asked */
    CHECK_EQ_INT(parse(&o, "--posthog-api", "offset", NULL), 0);
    CHECK(o.offset_api);
    CHECK_EQ_INT(parse(&o, "--posthog-api", "cursor", NULL), 0);
    CHECK(!o.offset_api);
}

static void test_refusals(void)
{
    static const char *const bad[][2] = {
        {"--max-connections", "0"},   {"--max-connections", "lots"}, {"--send-timeout", "0"},
        {"--send-timeout", "86401"},  {"--header-timeout", "-1"},    {"--max-held", "0"},
        {"--trusted-proxy", "proxy"}, {"--trusted-proxy", "10.0.0"}, {"--rate-limit-keys", "0"},
        {"--threads", "0"},           {"--threads", "257"},          {"--events-keepalive", "0"},
        {"--tls-cert", "c.pem"},      {"--no-such-option", NULL},
        {"--max-connections-per-address", "x"}, {"--posthog-api", "Offset"},
        {"--posthog-api", ""},
    };
    struct dmjd_options o;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(parse(&o, bad[i][0], bad[i][1], NULL), 2);
    CHECK_EQ_INT(parse(&o, "stray", NULL, NULL), 2);
    CHECK_EQ_INT(parse(&o, "--help", NULL, NULL), 1);
}

static void test_listen_split(void)
{
    char host[64], port[16];
    bool tls;
    CHECK_EQ_INT(dmjd_listen_split("127.0.0.1:80", false, host, sizeof host, port, sizeof port,
                                   &tls), 0);
    CHECK(strcmp(host, "127.0.0.1") == 0 && strcmp(port, "80") == 0 && !tls);
    CHECK_EQ_INT(dmjd_listen_split("https://[::1]:443", false, host, sizeof host, port,
                                   sizeof port, &tls), 0);
    CHECK(strcmp(host, "::1") == 0 && strcmp(port, "443") == 0 && tls);
    CHECK_EQ_INT(dmjd_listen_split("http://*:0", true, host, sizeof host, port, sizeof port,
                                   &tls), 0);
    CHECK(strcmp(host, "*") == 0 && !tls);
    CHECK_EQ_INT(dmjd_listen_split("h:1", true, host, sizeof host, port, sizeof port, &tls), 0);
    CHECK(tls); /* --tls-cert makes a bare HOST:PORT TLS */
    CHECK_EQ_INT(dmjd_listen_split("nocolon", false, host, sizeof host, port, sizeof port, &tls),
                 DMJ_EINVAL);
    CHECK_EQ_INT(dmjd_listen_split("[::1]:", false, host, sizeof host, port, sizeof port, &tls),
                 DMJ_EINVAL);
    CHECK_EQ_INT(dmjd_listen_split(":80", false, host, sizeof host, port, sizeof port, &tls),
                 DMJ_EINVAL);
}

int main(void)
{
    test_defaults();
    test_hostile_client_options();
    test_refusals();
    test_listen_split();
    return check_done();
}

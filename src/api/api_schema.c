/* The OpenAPI 3.0 document of the served endpoints (GET /api/schema/), kept as the one
 * source of truth in this file; tests/integration/test_schema.py validates it and checks
 * real answers against its schemas. */
#include <stdbool.h>
#include <stddef.h>

#include "dmj/api.h"
#include "dmj/buf.h"

/* The document is kept here as compact JSON (no white space outside strings) and re-indented
 * while it is written, one member or element a line at one space a level (what Python's
 * json.dumps(indent=1) writes and what has always been served), so that the text below
 * need not repeat the layout and each path item is written once for both prefixes. */

/* The tables stay as written: clang-format would break the spliced literals mid-word. */
/* clang-format off */
#define REF(kind, name) "{\"$ref\":\"#/components/" kind "/" name "\"}"
#define ERROR_CONTENT "\"content\":{\"application/json\":{\"schema\":" REF("schemas", "Error") "}}"
#define JOB_ARRAY "{\"type\":\"array\",\"items\":" REF("schemas", "DataModelingJob") "}"
#define TIME_PARAM_TEXT "an ISO 8601 date-time (T or a space between date and time, 0 to 6 " \
    "fraction digits, Z or +HH:MM or none for UTC; a + must be sent as %2B) or a date (its " \
    "midnight, UTC); empty filters nothing; anything else: 400 invalid, attr "
#define ID_PATTERN "^(@current|[ \\\\t\\\\n\\\\r\\\\x0b\\\\x0c]*[+-]?[0-9](_?[0-9])*" \
    "[ \\\\t\\\\n\\\\r\\\\x0b\\\\x0c]*)$"

/* The two URL prefixes that serve the same endpoints (DRF routes both). */
struct schema_prefix {
    const char *path;  /* "/api/<name>/{<param>}" */
    const char *param; /* the components/parameters entry of its path variable */
    const char *name;  /* the operationId prefix and the tag, as DRF derives both */
};

static const struct schema_prefix schema_prefixes[] = {
    {"/api/environments/{environment_id}", "EnvironmentId", "environments"},
    {"/api/projects/{project_id}", "ProjectId", "projects"},
};

/* One endpoint under a prefix; the strings are compact JSON text spliced into the item. */
struct schema_endpoint {
    const char *path;        /* after the prefix */
    const char *path_params; /* path-level parameters after the prefix's own, each led by ',' */
    const char *op;          /* the operationId after the prefix's name */
    const char *summary;
    const char *ok;    /* the members of the 200 response */
    const char *more;  /* responses besides 200 and the errors, each led by ',', or "" */
    const char *query; /* the operation's "parameters" member led by ',', or "" */
};

static const struct schema_endpoint schema_endpoints[] = {
    {"/data_modeling_jobs/", "", "_data_modeling_jobs_list",
     "List the runs, newest first (cursor pagination).",
     "\"description\":\"A page of runs.\",\"content\":{\"application/json\":{\"schema\":"
     REF("schemas", "PaginatedDataModelingJobList") "}}",
     "", ",\"parameters\":[" REF("parameters", "Cursor") "," REF("parameters", "Limit") ","
     REF("parameters", "SavedQueryId") "," REF("parameters", "Status") ","
     REF("parameters", "CreatedAfter") "," REF("parameters", "CreatedBefore") "]"},
    {"/data_modeling_jobs/{id}/", "," REF("parameters", "JobId"), "_data_modeling_jobs_retrieve",
     "One run by id.",
     "\"description\":\"The run.\",\"content\":{\"application/json\":{\"schema\":"
     REF("schemas", "DataModelingJob") "}}",
     "", ",\"parameters\":[" REF("parameters", "SavedQueryId") "]"},
    {"/data_modeling_jobs/recent/", "", "_data_modeling_jobs_recent_retrieve",
     "The newest finished materialization run of each saved query.",
     "\"description\":\"One run per saved query, by saved_query_id.\","
     "\"content\":{\"application/json\":{\"schema\":" JOB_ARRAY "}}",
     "", ""},
    {"/data_modeling_jobs/running/", "", "_data_modeling_jobs_running_retrieve",
     "The materialization runs in progress.",
     "\"description\":\"The running materializations, newest first.\","
     "\"content\":{\"application/json\":{\"schema\":" JOB_ARRAY "}}",
     ",\"304\":{\"description\":\"Not modified: If-None-Match matched the answer's ETag (with "
     "wait: for that many seconds, the answer did not change).\"}",
     ",\"parameters\":[" REF("parameters", "Wait") "]"},
    {"/data_modeling_jobs/events/", "", "_data_modeling_jobs_events_retrieve",
     "Server-Sent Events of the team's job changes, as imports and syncs commit them.",
     "\"description\":\"An event stream that stays open. Each change of one of the team's jobs "
     "is one event: an `id: <seq>` line, an `event:` line (created, status_changed or deleted) "
     "and one `data:` line of JSON, {\\\"seq\\\":<seq>,\\\"type\\\":<the event>,"
     "\\\"job_id\\\":<uuid>,\\\"status\\\":<status>,\\\"previous_status\\\":<status or "
     "null>,\\\"at\\\":<timestamp>,\\\"job\\\":<the job as retrieve renders it now, or "
     "null>}. The stream opens with a `: connected` comment line. Without a resume point it "
     "starts with the next change. When the resume point is older than the change log keeps, "
     "or beyond the newest seq this store gave out (seqs are per store: another replica's), "
     "the stream first sends `event: reset` with data {\\\"oldest\\\":<seq>}. An idle "
     "stream gets a `: keep-alive` comment line every "
     "15 seconds (dmjd --events-keepalive). At most 8 streams per key (--streams-per-key): "
     "one more is a 429.\","
     "\"content\":{\"text/event-stream\":{\"schema\":{\"type\":\"string\"},"
     "\"example\":\"id: 42\\nevent: status_changed\\ndata: {\\\"seq\\\":42,"
     "\\\"type\\\":\\\"status_changed\\\",\\\"job_id\\\":"
     "\\\"0b8e4c1e-4c44-4f7a-9c53-2f1d3b0e5a11\\\",\\\"status\\\":\\\"Completed\\\","
     "\\\"previous_status\\\":\\\"Running\\\",\\\"at\\\":"
     "\\\"2024-01-10T09:17:37.515905Z\\\",\\\"job\\\":null}\\n\\n\"}}",
     "", ",\"parameters\":[" REF("parameters", "LastEventIdHeader") ","
     REF("parameters", "LastEventIdQuery") "]"},
};

/* The current generation's list (docs/api.md): limit/offset with count. */
static const struct schema_endpoint schema_offset_list = {
    "/data_modeling_jobs/", "", "_data_modeling_jobs_list",
    "List the runs, newest first (limit/offset pagination).",
    "\"description\":\"A page of runs.\",\"content\":{\"application/json\":{\"schema\":"
    REF("schemas", "PaginatedDataModelingJobList") "}}",
    "", ",\"parameters\":[" REF("parameters", "PageLimit") "," REF("parameters", "Offset") ","
    REF("parameters", "SavedQueryId") "," REF("parameters", "Status") ","
    REF("parameters", "CreatedAfter") "," REF("parameters", "CreatedBefore") "]"};

/* The error answers every endpoint may give, after its 200. */
static const char schema_errors[] =
    ",\"400\":" REF("responses", "BadRequest") ",\"401\":" REF("responses", "Unauthorized")
    ",\"403\":" REF("responses", "Forbidden") ",\"404\":" REF("responses", "NotFound")
    ",\"405\":" REF("responses", "MethodNotAllowed") ",\"429\":" REF("responses", "Throttled")
    ",\"500\":" REF("responses", "ServerError");

static const char schema_head[] =
    "{\"openapi\":\"3.0.3\",\"info\":{\"title\":\"dmj: PostHog data modeling jobs API\","
    "\"version\":\"1.0.0\",\"description\":\"The runs of saved queries, served by dmjd from its "
    "store. Both prefixes serve the same endpoints; the trailing slash is optional.\"},"
    "\"paths\":{";

/* Everything after the paths, a piece a component so that no literal nears ISO C's 4095. */
static const char *const schema_tail[] = {
    "},\"components\":{\"schemas\":{\"DataModelingJob\":{\"type\":\"object\","
    "\"description\":\"One run of a saved query (a data modeling job).\","
    "\"additionalProperties\":false,\"required\":[\"id\",\"saved_query_id\",\"status\","
    "\"rows_materialized\",\"error\",\"created_at\",\"last_run_at\",\"workflow_id\","
    "\"workflow_run_id\",\"rows_expected\"],\"properties\":{"
    "\"id\":{\"type\":\"string\",\"format\":\"uuid\",\"readOnly\":true},"
    "\"saved_query_id\":{\"type\":\"string\",\"format\":\"uuid\",\"nullable\":true,"
    "\"readOnly\":true},"
    "\"status\":{\"type\":\"string\",\"readOnly\":true,\"enum\":[\"Running\",\"Completed\","
    "\"Failed\",\"Cancelled\",\"Skipped\"]},"
    "\"rows_materialized\":{\"type\":\"integer\",\"format\":\"int64\",\"readOnly\":true},"
    "\"error\":{\"type\":\"string\",\"nullable\":true,\"readOnly\":true},"
    "\"created_at\":{\"type\":\"string\",\"format\":\"date-time\",\"readOnly\":true},"
    "\"last_run_at\":{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true,"
    "\"readOnly\":true},"
    "\"workflow_id\":{\"type\":\"string\",\"nullable\":true,\"readOnly\":true},"
    "\"workflow_run_id\":{\"type\":\"string\",\"nullable\":true,\"readOnly\":true},"
    "\"rows_expected\":{\"type\":\"integer\",\"format\":\"int64\",\"nullable\":true,"
    "\"readOnly\":true}}},",

    "\"PaginatedDataModelingJobList\":{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"next\",\"previous\",\"results\"],\"properties\":{"
    "\"next\":{\"type\":\"string\",\"format\":\"uri\",\"nullable\":true,"
    "\"example\":\"http://api.example.org/accounts/?cursor=cD0yMDI1LTAxLTAx\"},"
    "\"previous\":{\"type\":\"string\",\"format\":\"uri\",\"nullable\":true},"
    "\"results\":" JOB_ARRAY "}},",

    "\"Error\":{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"type\",\"code\",\"detail\",\"attr\"],\"properties\":{"
    "\"type\":{\"type\":\"string\",\"enum\":[\"validation_error\",\"authentication_error\","
    "\"invalid_request\",\"throttled_error\",\"server_error\"]},"
    "\"code\":{\"type\":\"string\",\"enum\":[\"invalid_choice\",\"null_characters_not_allowed\","
    "\"invalid\",\"min_value\",\"max_value\",\"bad_request\",\"not_authenticated\",\"authentication_failed\",\"permission_denied\","
    "\"not_found\",\"method_not_allowed\",\"throttled\",\"error\"]},"
    "\"detail\":{\"type\":\"string\"},\"attr\":{\"type\":\"string\",\"nullable\":true}}}},",

    "\"parameters\":{"
    "\"ProjectId\":{\"name\":\"project_id\",\"in\":\"path\",\"required\":true,"
    "\"description\":\"The project's id (an integer), or @current for the API key owner's "
    "current one.\",\"schema\":{\"type\":\"string\",\"pattern\":\"" ID_PATTERN "\"}},"
    "\"EnvironmentId\":{\"name\":\"environment_id\",\"in\":\"path\",\"required\":true,"
    "\"description\":\"The environment's id (an integer), or @current for the API key owner's "
    "current one.\",\"schema\":{\"type\":\"string\",\"pattern\":\"" ID_PATTERN "\"}},"
    "\"JobId\":{\"name\":\"id\",\"in\":\"path\",\"required\":true,"
    "\"description\":\"A UUID string identifying this data modeling job.\","
    "\"schema\":{\"type\":\"string\",\"format\":\"uuid\"}},"
    "\"Cursor\":{\"name\":\"cursor\",\"in\":\"query\",\"required\":false,"
    "\"description\":\"The pagination cursor value.\",\"schema\":{\"type\":\"string\"}},"
    "\"Limit\":{\"name\":\"limit\",\"in\":\"query\",\"required\":false,"
    "\"description\":\"Number of results to return per page (default 100, at most the "
    "server's maximum, 1000 unless configured).\",\"schema\":{\"type\":\"integer\"}},"
    "\"SavedQueryId\":{\"name\":\"saved_query_id\",\"in\":\"query\",\"required\":false,"
    "\"description\":\"Only the runs of this saved query.\","
    "\"schema\":{\"type\":\"string\",\"format\":\"uuid\"}},"
    "\"Status\":{\"name\":\"status\",\"in\":\"query\",\"required\":false,"
    "\"description\":\"Only the runs with one of these statuses: a comma-separated list of the "
    "exact names (case-sensitive). Repeated status parameters add to the list; empty items "
    "and an empty value filter nothing. Any other name: 400 invalid_choice, attr status.\","
    "\"style\":\"form\",\"explode\":false,\"schema\":{\"type\":\"array\",\"items\":"
    "{\"type\":\"string\",\"enum\":[\"Running\",\"Completed\",\"Failed\",\"Cancelled\","
    "\"Skipped\"]}}},"
    "\"CreatedAfter\":{\"name\":\"created_after\",\"in\":\"query\",\"required\":false,"
    "\"description\":\"Only the runs created strictly after this instant: "
    TIME_PARAM_TEXT "created_after.\",\"schema\":{\"type\":\"string\",\"format\":\"date-time\"},"
    "\"example\":\"2024-01-10T09:00:00Z\"},"
    "\"CreatedBefore\":{\"name\":\"created_before\",\"in\":\"query\",\"required\":false,"
    "\"description\":\"Only the runs created strictly before this instant: "
    TIME_PARAM_TEXT "created_before.\",\"schema\":{\"type\":\"string\",\"format\":\"date-time\"},"
    "\"example\":\"2024-01-10T09:00:00Z\"},",

    /* The offset generation's parameters (PARAMS_PIECE); none in the cursor generation. */
    "",

    "\"Wait\":{\"name\":\"wait\",\"in\":\"query\",\"required\":false,"
    "\"description\":\"With an If-None-Match that matches the current answer's ETag, wait up "
    "to this many seconds for the answer to change (then 200 with the new answer), else 304. "
    "Without a matching If-None-Match the answer comes at once.\","
    "\"schema\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":60}},"
    "\"LastEventIdHeader\":{\"name\":\"Last-Event-ID\",\"in\":\"header\",\"required\":false,"
    "\"description\":\"Resume after this event (the id of the last event received), as "
    "EventSource sends it on reconnection.\",\"schema\":{\"type\":\"integer\","
    "\"format\":\"int64\",\"minimum\":0}},"
    "\"LastEventIdQuery\":{\"name\":\"last_event_id\",\"in\":\"query\",\"required\":false,"
    "\"description\":\"The same as Last-Event-ID, for clients that cannot set headers (the "
    "header wins).\",\"schema\":{\"type\":\"integer\",\"format\":\"int64\","
    "\"minimum\":0}}},",

    "\"responses\":{"
    "\"BadRequest\":{\"description\":\"An invalid parameter value (validation_error; attr "
    "names the parameter).\","
    ERROR_CONTENT "},"
    "\"Unauthorized\":{\"description\":\"No, unknown or invalid personal API key.\","
    ERROR_CONTENT ",\"headers\":{\"WWW-Authenticate\":{\"schema\":{\"type\":\"string\","
    "\"enum\":[\"Bearer\"]}}}},"
    "\"Forbidden\":{\"description\":\"The key may not read this project (scope, scoped teams "
    "or organizations, membership).\"," ERROR_CONTENT "},"
    "\"NotFound\":{\"description\":\"No such project, job, endpoint, or an invalid cursor.\","
    ERROR_CONTENT "},"
    "\"MethodNotAllowed\":{\"description\":\"Only GET, HEAD and OPTIONS are served.\","
    ERROR_CONTENT ",\"headers\":{\"Allow\":{\"schema\":{\"type\":\"string\"}}}},"
    "\"Throttled\":{\"description\":\"Rate limit exceeded.\"," ERROR_CONTENT ","
    "\"headers\":{\"Retry-After\":{\"schema\":{\"type\":\"integer\"},"
    "\"description\":\"Seconds until a request would be allowed.\"}}},"
    "\"ServerError\":{\"description\":\"Internal error.\"," ERROR_CONTENT "}},",

    "\"securitySchemes\":{"
    "\"PersonalAPIKeyAuth\":{\"type\":\"http\",\"scheme\":\"bearer\","
    "\"description\":\"A personal API key (phx_...).\"},"
    "\"PersonalAPIKeyQuery\":{\"type\":\"apiKey\",\"in\":\"query\","
    "\"name\":\"personal_api_key\"}}},"
    "\"security\":[{\"PersonalAPIKeyAuth\":[]},{\"PersonalAPIKeyQuery\":[]}],"
    "\"tags\":[{\"name\":\"environments\"},{\"name\":\"projects\"}]}",
};

/* The pieces of schema_tail that the offset generation replaces. */
#define JOB_PIECE 0
#define PAGE_PIECE 1
#define PARAMS_PIECE 4

static const char schema_offset_job[] =
    "},\"components\":{\"schemas\":{\"DataModelingJob\":{\"type\":\"object\","
    "\"description\":\"One run of a saved query (a data modeling job).\","
    "\"additionalProperties\":false,\"required\":[\"id\",\"saved_query_id\",\"status\","
    "\"run_mode\",\"rows_materialized\",\"error\",\"created_at\",\"last_run_at\","
    "\"updated_at\",\"workflow_id\",\"workflow_run_id\",\"rows_expected\"],\"properties\":{"
    "\"id\":{\"type\":\"string\",\"format\":\"uuid\",\"readOnly\":true},"
    "\"saved_query_id\":{\"type\":\"string\",\"format\":\"uuid\",\"nullable\":true,"
    "\"readOnly\":true},"
    "\"status\":{\"type\":\"string\",\"readOnly\":true,\"enum\":[\"Running\",\"Completed\","
    "\"Failed\",\"Cancelled\",\"Skipped\"]},"
    "\"run_mode\":{\"type\":\"string\",\"nullable\":true,\"readOnly\":true,"
    "\"description\":\"full_refresh or incremental, as stored.\"},"
    "\"rows_materialized\":{\"type\":\"integer\",\"format\":\"int64\",\"readOnly\":true},"
    "\"error\":{\"type\":\"string\",\"nullable\":true,\"readOnly\":true},"
    "\"created_at\":{\"type\":\"string\",\"format\":\"date-time\",\"readOnly\":true},"
    "\"last_run_at\":{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true,"
    "\"readOnly\":true},"
    "\"updated_at\":{\"type\":\"string\",\"format\":\"date-time\",\"nullable\":true,"
    "\"readOnly\":true},"
    "\"workflow_id\":{\"type\":\"string\",\"nullable\":true,\"readOnly\":true},"
    "\"workflow_run_id\":{\"type\":\"string\",\"nullable\":true,\"readOnly\":true},"
    "\"rows_expected\":{\"type\":\"integer\",\"format\":\"int64\",\"nullable\":true,"
    "\"readOnly\":true}}},";

static const char schema_offset_page[] =
    "\"PaginatedDataModelingJobList\":{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"count\",\"next\",\"previous\",\"results\"],\"properties\":{"
    "\"count\":{\"type\":\"integer\",\"example\":123,\"description\":\"The runs that match "
    "(every page).\"},"
    "\"next\":{\"type\":\"string\",\"format\":\"uri\",\"nullable\":true,"
    "\"example\":\"http://api.example.org/accounts/?limit=100&offset=400\"},"
    "\"previous\":{\"type\":\"string\",\"format\":\"uri\",\"nullable\":true,"
    "\"example\":\"http://api.example.org/accounts/?limit=100&offset=200\"},"
    "\"results\":" JOB_ARRAY "}},";

static const char schema_offset_params[] =
    "\"PageLimit\":{\"name\":\"limit\",\"in\":\"query\",\"required\":false,"
    "\"description\":\"Number of results to return per page (default 10, at most 100).\","
    "\"schema\":{\"type\":\"integer\"}},"
    "\"Offset\":{\"name\":\"offset\",\"in\":\"query\",\"required\":false,"
    "\"description\":\"The initial index from which to return the results (default 0).\","
    "\"schema\":{\"type\":\"integer\"}},";

/* clang-format on */

/* Where the re-indenting writer stands; pieces are fed one after another, so a container
 * opened at the end of one piece may be closed at the start of the next. */
struct schema_writer {
    struct dmj_buf *out;
    size_t depth;
    char pending; /* the '{' or '[' just written, until we know whether it is empty */
    bool in_string;
    bool escaped; /* the previous byte in the string was a backslash */
};

static int schema_newline(struct schema_writer *w)
{
    int rc = dmj_buf_addc(w->out, '\n');
    for (size_t i = 0; rc == 0 && i < w->depth; i++)
        rc = dmj_buf_addc(w->out, ' ');
    return rc;
}

static int schema_byte(struct schema_writer *w, char c)
{
    int rc;

    if (w->in_string) {
        if (w->escaped)
            w->escaped = false;
        else if (c == '\\')
            w->escaped = true;
        else if (c == '"')
            w->in_string = false;
        return dmj_buf_addc(w->out, c);
    }
    if (w->pending) {
        char open = w->pending;
        w->pending = 0;
        /* An empty container stays on one line ("[]"), as json.dumps writes it. */
        if ((open == '{' && c == '}') || (open == '[' && c == ']')) {
            w->depth--;
            return dmj_buf_addc(w->out, c);
        }
        rc = schema_newline(w);
        if (rc != 0)
            return rc;
    }
    switch (c) {
    case '"':
        w->in_string = true;
        return dmj_buf_addc(w->out, c);
    case '{':
    case '[':
        w->depth++;
        w->pending = c;
        return dmj_buf_addc(w->out, c);
    case '}':
    case ']':
        if (w->depth == 0)
            return DMJ_EINVAL; /* unbalanced text in this file: never served half-indented */
        w->depth--;
        rc = schema_newline(w);
        return rc != 0 ? rc : dmj_buf_addc(w->out, c);
    case ',':
        rc = dmj_buf_addc(w->out, c);
        return rc != 0 ? rc : schema_newline(w);
    case ':':
        return dmj_buf_add(w->out, ": ", 2);
    default:
        return dmj_buf_addc(w->out, c);
    }
}

static int schema_put(struct schema_writer *w, const char *s)
{
    for (; *s; s++) {
        int rc = schema_byte(w, *s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* One path item: the endpoint `e` under the prefix `p`. */
static int schema_path_item(struct schema_writer *w, const struct schema_prefix *p,
                            const struct schema_endpoint *e)
{
    const char *parts[] = {
        "\"",
        p->path,
        e->path,
        "\":{\"parameters\":[{\"$ref\":\"#/components/parameters/",
        p->param,
        "\"}",
        e->path_params,
        "],\"get\":{\"operationId\":\"",
        p->name,
        e->op,
        "\",\"summary\":\"",
        e->summary,
        "\",\"tags\":[\"",
        p->name,
        "\"],\"responses\":{\"200\":{",
        e->ok,
        "}",
        schema_errors,
        e->more,
        "}",
        e->query,
        "}}",
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        int rc = schema_put(w, parts[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int schema_write(struct schema_writer *w, enum dmj_api_generation g)
{
    const size_t np = sizeof schema_prefixes / sizeof schema_prefixes[0];
    const size_t ne = sizeof schema_endpoints / sizeof schema_endpoints[0];
    const bool offset = g == DMJ_API_OFFSET;
    int rc = schema_put(w, schema_head);

    for (size_t i = 0; rc == 0 && i < np * ne; i++) {
        const struct schema_endpoint *e = &schema_endpoints[i % ne];
        if (offset && i % ne == 0)
            e = &schema_offset_list;
        if (i > 0)
            rc = schema_put(w, ",");
        if (rc == 0)
            rc = schema_path_item(w, &schema_prefixes[i / ne], e);
    }
    for (size_t i = 0; rc == 0 && i < sizeof schema_tail / sizeof schema_tail[0]; i++) {
        const char *piece = schema_tail[i];
        if (offset && i == JOB_PIECE)
            piece = schema_offset_job;
        else if (offset && i == PAGE_PIECE)
            piece = schema_offset_page;
        else if (offset && i == PARAMS_PIECE)
            piece = schema_offset_params;
        rc = schema_put(w, piece);
    }
    if (rc == 0 && (w->depth != 0 || w->in_string || w->pending))
        rc = DMJ_EINVAL;
    return rc != 0 ? rc : dmj_buf_addc(w->out, '\n');
}

int dmj_api_schema_render(struct dmj_buf *out)
{
    return dmj_api_schema_render_for(out, DMJ_API_CURSOR);
}

int dmj_api_schema_render_for(struct dmj_buf *out, enum dmj_api_generation g)
{
    struct schema_writer w = {.out = out};
    size_t start = out->len;
    int rc = schema_write(&w, g);

    /* A failure leaves `out` as it was, not with half a document. */
    if (rc != 0 && out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

/** The h2o handlers: an API request copied into a dmj_api_request and answered. */
#ifndef DMJD_HANDLER_H
#define DMJD_HANDLER_H

struct dmjd_server;

/** Registers the request handler at "/" of the global configuration. */
void dmjd_handler_register(struct dmjd_server *srv);

#endif

/*
 * str.h - small string helpers shared by the protocol layers.
 */
#ifndef REALM_BASE_STR_H
#define REALM_BASE_STR_H

/* Does a comma-separated list (an HTTP header value) hold token, ignoring case? */
int realm_str_has_token(const char *list, const char *token);

/* A random (version 4) UUID, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", into out. */
void realm_str_uuid4(char out[37]);

#endif

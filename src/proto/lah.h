/*
 * lah.h - the Lambda@Home dialect of the Lambda control API's JSON: the
 * same operations, with snake_case keys and a few flatter shapes
 * (docs/compatibility.md). I/O-free; api/dialect.c applies it to requests
 * and responses under the control port's /lambda-at-home prefix.
 *
 * DESIGN: a key-by-key rename in both directions, recursive, with the
 * shapes Lambda@Home flattens done by name:
 *   AWS -> Lambda@Home   FunctionName -> function_name (acronyms: KMSKeyArn
 *                        -> kms_key_arn); "Environment": {"Variables": M}
 *                        -> "environment": M; GetFunction's
 *                        {"Configuration": C, "Code"...} -> C's fields at
 *                        the top, the others beside them.
 *   Lambda@Home -> AWS   function_name -> FunctionName, zip_file -> ZipFile,
 *                        "environment": M -> "Environment": {"Variables": M}.
 * The keys of maps that hold user data (Variables, Tags,
 * AdditionalVersionWeights, and environment/tags/additional_version_weights
 * in requests) are copied as they are, never renamed. Keys that are already
 * in the target form come out unchanged, so a mixed body is fine.
 * LIFETIME: every function returns a new reference and borrows its input.
 * THREADS: any.
 */
#ifndef REALM_PROTO_LAH_H
#define REALM_PROTO_LAH_H

#include <jansson.h>
#include <stddef.h>

/* An AWS-shaped response body in Lambda@Home's form (a new reference). */
json_t *realm_lah_from_aws(const json_t *aws);

/*
 * An AWS error response in Lambda@Home's ErrorShape: {"error_type": type,
 * "error_message": the body's "message"}, plus the body's other fields
 * (Reason...) renamed, except "Type" (User/Service). type may be NULL ("").
 */
json_t *realm_lah_error_from_aws(const json_t *aws, const char *type);

/* A Lambda@Home request body in AWS's form (a new reference). */
json_t *realm_lah_to_aws(const json_t *lah);

/*
 * One key: CamelCase to snake_case, or snake_case to CamelCase, into out
 * (NUL-terminated; truncated to out_len - 1). Returns the full length.
 */
size_t realm_lah_snake(const char *key, char *out, size_t out_len);
size_t realm_lah_camel(const char *key, char *out, size_t out_len);

#endif

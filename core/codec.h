/*
** codec.h
** Value codec between Lua and Go: one wire format ("message") that both
** sides encode and decode.  See codec.c for the format.
*/

#ifndef MB_CODEC_H
#define MB_CODEC_H

#include <stddef.h>

#include <lua.h>

#include "buf.h"

/* wire tags */
#define MB_CODEC_NIL	0x00
#define MB_CODEC_FALSE	0x01
#define MB_CODEC_TRUE	0x02
#define MB_CODEC_INT	0x03
#define MB_CODEC_FLOAT	0x04
#define MB_CODEC_STRING	0x05
#define MB_CODEC_ARRAY	0x06
#define MB_CODEC_MAP	0x07
#define MB_CODEC_IMAP	0x08 /* integer keys: Go maps such as map[int]any */

/* nesting limits: encoders refuse more, decoders accept up to twice that */
#define MB_CODEC_MAX_ENCODE_DEPTH	100
#define MB_CODEC_MAX_DECODE_DEPTH	200

/*
** Encode the n Lua values at stack indices first..first+n-1 of L as one
** message appended to out.  Returns 0, or -1 with a NUL-terminated message
** in err; on error out->len and the Lua stack are as they were.  Never
** raises a Lua error.  Messages name the place, as in
** "argument #1 (field 'opts.stop[3]'): cannot send a userdata to Go";
** long paths are shortened in the middle, so 200 bytes of err hold all but
** freak messages (longer ones are truncated, still NUL-terminated).
*/
int mb_codec_encode(lua_State *L, int first, int n, mb_buf *out,
                    char *err, size_t errlen);

/*
** Encode the n values at stack indices 1..n of L into p (cap bytes) if
** they are all nil, booleans, numbers or strings and fit: the length, or
** -1 (use mb_codec_encode, which also reports what is wrong).
*/
int mb_codec_encode_flat(lua_State *L, int n, char *p, size_t cap);

/*
** Decode a message and push its values on L.  Returns the number of values
** pushed, or -1 with a message in err and the stack as it was.  Only memory
** errors may raise, so call it in a protected context.
*/
int mb_codec_decode(lua_State *L, const char *data, size_t len,
                    char *err, size_t errlen);

#endif

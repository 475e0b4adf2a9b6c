/*
** codec.c
** Value codec between Lua and Go.
**
** Wire format (a "message"; integers little-endian, fixed width):
**   message := u32 count, then count values
**   value   := tag byte + payload
**     0x00 nil, 0x01 false, 0x02 true
**     0x03 int    : 8 bytes int64
**     0x04 float  : 8 bytes IEEE-754 binary64 (bits as they are)
**     0x05 string : u32 length, then the bytes
**     0x06 array  : u32 count, then count values
**     0x07 map    : u32 count, then count x (u32 keylen, key bytes, value)
**
** The Go side (codec.go) implements the same format; keep them in step.
*/

#include "codec.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

_Static_assert(sizeof(lua_Integer) == 8, "codec needs 64-bit Lua integers");
_Static_assert(sizeof(lua_Number) == 8, "codec needs double Lua floats");

#if defined(__GNUC__)
#define MB_CODEC_PRINTF(f, a)	__attribute__((format(printf, f, a)))
#else
#define MB_CODEC_PRINTF(f, a)
#endif

/* longer paths in error messages are shortened in the middle */
#define MB_CODEC_MAX_PATH	72

/* cap on table preallocation hints; bigger tables grow by rehashing */
#define MB_CODEC_MAX_HINT	(1 << 20)


/*
** {======================================================
** Byte order
** =======================================================
*/

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define MB_CODEC_LITTLE	1
#else
#define MB_CODEC_LITTLE	0
#endif

static void mb_codec_put32 (char *p, uint32_t v) {
  if (MB_CODEC_LITTLE)
    memcpy(p, &v, 4);
  else {
    int i;
    for (i = 0; i < 4; i++) p[i] = (char)(unsigned char)(v >> (8 * i));
  }
}


static void mb_codec_put64 (char *p, uint64_t v) {
  if (MB_CODEC_LITTLE)
    memcpy(p, &v, 8);
  else {
    int i;
    for (i = 0; i < 8; i++) p[i] = (char)(unsigned char)(v >> (8 * i));
  }
}


static uint32_t mb_codec_get32 (const unsigned char *p) {
  uint32_t v;
  if (MB_CODEC_LITTLE)
    memcpy(&v, p, 4);
  else
    v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
        (uint32_t)p[3] << 24;
  return v;
}


static uint64_t mb_codec_get64 (const unsigned char *p) {
  uint64_t v;
  if (MB_CODEC_LITTLE)
    memcpy(&v, p, 8);
  else
    v = (uint64_t)mb_codec_get32(p) | (uint64_t)mb_codec_get32(p + 4) << 32;
  return v;
}

/* }====================================================== */


/*
** {======================================================
** Error messages: a bounded string builder that always stays
** NUL-terminated and silently truncates
** =======================================================
*/

typedef struct mb_codec_sb {
  char *p;
  size_t cap, len;
} mb_codec_sb;


static void mb_codec_sbinit (mb_codec_sb *sb, char *p, size_t cap) {
  sb->p = p;
  sb->cap = (p == NULL) ? 0 : cap;
  sb->len = 0;
  if (sb->cap > 0) p[0] = '\0';
}


static void mb_codec_sbadd (mb_codec_sb *sb, const char *s, size_t l) {
  size_t room;
  if (sb->cap == 0) return;
  room = sb->cap - 1 - sb->len;
  if (l > room) l = room;
  memcpy(sb->p + sb->len, s, l);
  sb->len += l;
  sb->p[sb->len] = '\0';
}


static void mb_codec_sbadds (mb_codec_sb *sb, const char *s) {
  mb_codec_sbadd(sb, s, strlen(s));
}


static void mb_codec_sbvf (mb_codec_sb *sb, const char *fmt, va_list ap) {
  int r;
  if (sb->cap == 0) return;
  r = vsnprintf(sb->p + sb->len, sb->cap - sb->len, fmt, ap);
  if (r > 0) {
    sb->len += (size_t)r;
    if (sb->len > sb->cap - 1) sb->len = sb->cap - 1;  /* truncated */
  }
}


MB_CODEC_PRINTF(2, 3)
static void mb_codec_sbf (mb_codec_sb *sb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mb_codec_sbvf(sb, fmt, ap);
  va_end(ap);
}

/* }====================================================== */


/*
** {======================================================
** Encoder: Lua values -> message
** =======================================================
*/

/* one open table on the path from an argument to the value being encoded */
typedef struct mb_codec_frame {
  const void *table;  /* identity, for cycle detection */
  const char *name;   /* string key being encoded (on the Lua stack), or NULL */
  size_t namelen;
  lua_Integer index;  /* integer key being encoded, when name is NULL */
} mb_codec_frame;


typedef struct mb_codec_enc {
  lua_State *L;
  mb_buf *out;
  char *err;
  size_t errlen;
  int arg;    /* argument being encoded, from 1 */
  int depth;  /* open tables: valid entries of path */
  mb_codec_frame path[MB_CODEC_MAX_ENCODE_DEPTH];
} mb_codec_enc;


static int mb_codec_isname (const char *s, size_t l) {
  size_t i;
  if (l == 0 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') ||
                  (s[0] >= 'A' && s[0] <= 'Z')))
    return 0;
  for (i = 1; i < l; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}


/* key as Lua would write it: name, .name, [3] or ["odd key"] */
static void mb_codec_addkey (mb_codec_sb *sb, const mb_codec_frame *f,
                             int first) {
  size_t i, l;
  if (f->name == NULL) {
    mb_codec_sbf(sb, "[" LUA_INTEGER_FMT "]", (LUAI_UACINT)f->index);
    return;
  }
  if (f->namelen <= 40 && mb_codec_isname(f->name, f->namelen)) {
    if (!first) mb_codec_sbadd(sb, ".", 1);
    mb_codec_sbadd(sb, f->name, f->namelen);
    return;
  }
  l = (f->namelen > 32) ? 32 : f->namelen;  /* keep messages short */
  mb_codec_sbadd(sb, "[\"", 2);
  for (i = 0; i < l; i++) {
    unsigned char c = (unsigned char)f->name[i];
    if (c == '"' || c == '\\') {
      char q[2] = {'\\', (char)c};
      mb_codec_sbadd(sb, q, 2);
    }
    else if (c >= 0x20 && c < 0x7f)
      mb_codec_sbadd(sb, (const char *)&c, 1);
    else
      mb_codec_sbf(sb, "\\%u", (unsigned)c);
  }
  if (l < f->namelen) mb_codec_sbadd(sb, "...", 3);
  mb_codec_sbadd(sb, "\"]", 2);
}


static size_t mb_codec_keylen (const mb_codec_frame *f, int first) {
  char buf[256];
  mb_codec_sb sb;
  mb_codec_sbinit(&sb, buf, sizeof(buf));
  mb_codec_addkey(&sb, f, first);
  return sb.len;
}


/*
** The path to a value; a long one keeps its head and tail around "..."
** so that the reason after it still fits in a modest err buffer.
*/
static void mb_codec_addpath (mb_codec_sb *sb, const mb_codec_enc *e,
                              int pathlen) {
  size_t total = 0, n;
  int i, h, t;
  for (i = 0; i < pathlen; i++)
    total += mb_codec_keylen(&e->path[i], i == 0);
  if (total <= MB_CODEC_MAX_PATH) {
    for (i = 0; i < pathlen; i++)
      mb_codec_addkey(sb, &e->path[i], i == 0);
    return;
  }
  n = 0;  /* head: keys while they fit in a third, at least the first */
  for (h = 0; h < pathlen - 1; h++) {
    size_t l = mb_codec_keylen(&e->path[h], h == 0);
    if (h > 0 && n + l > MB_CODEC_MAX_PATH / 3) break;
    mb_codec_addkey(sb, &e->path[h], h == 0);
    n += l;
  }
  t = pathlen - 1;  /* tail: keys that fit in the rest, at least the last */
  n = mb_codec_keylen(&e->path[t], 1);
  while (t > h && n + mb_codec_keylen(&e->path[t - 1], 0) <=
                  MB_CODEC_MAX_PATH * 2 / 3)
    n += mb_codec_keylen(&e->path[--t], 0);
  if (t > h)
    mb_codec_sbadd(sb, "...", 3);
  for (i = t; i < pathlen; i++)
    mb_codec_addkey(sb, &e->path[i], i == 0 || (i == t && t > h));
}


/*
** Report an error about the value reached through the first pathlen keys
** of the path: "argument #N (field 'a.b'): message".
*/
MB_CODEC_PRINTF(3, 4)
static int mb_codec_efail (mb_codec_enc *e, int pathlen, const char *fmt,
                           ...) {
  mb_codec_sb sb;
  va_list ap;
  mb_codec_sbinit(&sb, e->err, e->errlen);
  mb_codec_sbf(&sb, "argument #%d", e->arg);
  if (pathlen > 0) {
    mb_codec_sbadds(&sb, " (field '");
    mb_codec_addpath(&sb, e, pathlen);
    mb_codec_sbadds(&sb, "')");
  }
  mb_codec_sbadds(&sb, ": ");
  va_start(ap, fmt);
  mb_codec_sbvf(&sb, fmt, ap);
  va_end(ap);
  return -1;
}


static int mb_codec_nomem (mb_codec_enc *e) {
  return mb_codec_efail(e, e->depth, "out of memory");
}


static int mb_codec_etag (mb_codec_enc *e, int tag) {
  if (mb_buf_reserve(e->out, 1)) return mb_codec_nomem(e);
  e->out->data[e->out->len++] = (char)tag;
  return 0;
}


/* append a tag followed by a u32 (a length or a count) */
static int mb_codec_head (mb_codec_enc *e, int tag, size_t n) {
  char *p;
  if (mb_buf_reserve(e->out, 5)) return mb_codec_nomem(e);
  p = e->out->data + e->out->len;
  p[0] = (char)tag;
  mb_codec_put32(p + 1, (uint32_t)n);
  e->out->len += 5;
  return 0;
}


static int mb_codec_estring (mb_codec_enc *e, const char *s, size_t l) {
  char *p;
  if ((uint64_t)l > UINT32_MAX)
    return mb_codec_efail(e, e->depth, "string too long (%zu bytes)", l);
  if (mb_buf_reserve(e->out, 5 + l)) return mb_codec_nomem(e);
  p = e->out->data + e->out->len;
  p[0] = (char)MB_CODEC_STRING;
  mb_codec_put32(p + 1, (uint32_t)l);
  memcpy(p + 5, s, l);
  e->out->len += 5 + l;
  return 0;
}


static int mb_codec_evalue (mb_codec_enc *e, int idx);


/*
** One raw pass over the keys decides what the table is: all integer keys
** within 1..n (n = number of keys) make an array, all string keys a map.
** Keys are distinct, so min >= 1 and max <= n means exactly 1..n.
*/
static int mb_codec_classify (mb_codec_enc *e, int idx, size_t *nkeys,
                              int *isarray) {
  lua_State *L = e->L;
  size_t nint = 0, nstr = 0;
  lua_Integer min = LUA_MAXINTEGER, max = LUA_MININTEGER;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    switch (lua_type(L, -2)) {
      case LUA_TSTRING:
        nstr++;
        break;
      case LUA_TNUMBER:
        if (lua_isinteger(L, -2)) {
          lua_Integer k = lua_tointeger(L, -2);
          if (k < min) min = k;
          if (k > max) max = k;
          nint++;
          break;
        }
        return mb_codec_efail(e, e->depth, "table key %.14g is not an integer",
                              (double)lua_tonumber(L, -2));
      default:
        return mb_codec_efail(e, e->depth,
                              "table key of type %s cannot cross to Go",
                              luaL_typename(L, -2));
    }
    if (nint > 0 && nstr > 0)
      return mb_codec_efail(e, e->depth,
                            "table mixes integer and string keys");
    lua_pop(L, 1);  /* keep the key for the next round */
  }
  if (nint > 0 && (min < 1 || (uint64_t)max > (uint64_t)nint))
    return mb_codec_efail(e, e->depth,
                          "table is not a sequence: integer keys are not 1..n");
  if ((uint64_t)(nint + nstr) > UINT32_MAX)
    return mb_codec_efail(e, e->depth, "table too large (%zu keys)",
                          nint + nstr);
  *nkeys = nint + nstr;
  *isarray = (nint > 0);
  return 0;
}


static int mb_codec_etable (mb_codec_enc *e, int idx) {
  lua_State *L = e->L;
  const void *t = lua_topointer(L, idx);
  mb_codec_frame *f;
  size_t n = 0;
  int d = e->depth, i, isarray = 0;
  for (i = 0; i < d; i++) {  /* depth <= 100: a linear scan is cheap */
    if (e->path[i].table == t) {
      char where[256];
      mb_codec_sb sb;
      mb_codec_sbinit(&sb, where, sizeof(where));
      mb_codec_addpath(&sb, e, d);
      return mb_codec_efail(e, 0,
          "table is cyclic (field '%s' refers back to an enclosing table)",
          where);
    }
  }
  if (d >= MB_CODEC_MAX_ENCODE_DEPTH)
    return mb_codec_efail(e, 0, "nested too deeply (more than %d levels)",
                          MB_CODEC_MAX_ENCODE_DEPTH);
  if (!lua_checkstack(L, 3))
    return mb_codec_efail(e, d, "Lua stack overflow");
  if (mb_codec_classify(e, idx, &n, &isarray))
    return -1;
  if (mb_codec_head(e, isarray ? MB_CODEC_ARRAY : MB_CODEC_MAP, n))
    return -1;
  f = &e->path[d];
  f->table = t;
  e->depth = d + 1;
  if (isarray) {
    lua_Integer k;
    f->name = NULL;
    for (k = 1; k <= (lua_Integer)n; k++) {
      f->index = k;
      lua_rawgeti(L, idx, k);
      if (mb_codec_evalue(e, lua_gettop(L)))
        return -1;  /* mb_codec_encode resets the stack */
      lua_pop(L, 1);
    }
  }
  else {
    lua_pushnil(L);
    while (lua_next(L, idx)) {  /* classify checked: all keys are strings */
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      char *p;
      if (mb_buf_reserve(e->out, 4 + kl)) return mb_codec_nomem(e);
      p = e->out->data + e->out->len;
      mb_codec_put32(p, (uint32_t)kl);
      memcpy(p + 4, k, kl);
      e->out->len += 4 + kl;
      f->name = k;  /* valid while the key is on the stack */
      f->namelen = kl;
      if (mb_codec_evalue(e, lua_gettop(L)))
        return -1;
      lua_pop(L, 1);
    }
  }
  e->depth = d;
  return 0;
}


static int mb_codec_evalue (mb_codec_enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return mb_codec_etag(e, MB_CODEC_NIL);
    case LUA_TBOOLEAN:
      return mb_codec_etag(e, lua_toboolean(L, idx) ? MB_CODEC_TRUE
                                                    : MB_CODEC_FALSE);
    case LUA_TNUMBER: {
      char *p;
      uint64_t u;
      if (mb_buf_reserve(e->out, 9)) return mb_codec_nomem(e);
      p = e->out->data + e->out->len;
      if (lua_isinteger(L, idx)) {
        p[0] = (char)MB_CODEC_INT;
        u = (uint64_t)lua_tointeger(L, idx);
      }
      else {
        lua_Number x = lua_tonumber(L, idx);
        p[0] = (char)MB_CODEC_FLOAT;
        memcpy(&u, &x, 8);  /* bits as they are, NaN payloads included */
      }
      mb_codec_put64(p + 1, u);
      e->out->len += 9;
      return 0;
    }
    case LUA_TSTRING: {
      size_t l;
      const char *s = lua_tolstring(L, idx, &l);
      return mb_codec_estring(e, s, l);
    }
    case LUA_TTABLE:
      return mb_codec_etable(e, idx);
    default:
      return mb_codec_efail(e, e->depth, "cannot send a %s to Go",
                            luaL_typename(L, idx));
  }
}


int mb_codec_encode (lua_State *L, int first, int n, mb_buf *out,
                     char *err, size_t errlen) {
  mb_codec_enc e;
  size_t start = out->len;
  int top = lua_gettop(L), i;
  e.L = L;
  e.out = out;
  e.err = err;
  e.errlen = err ? errlen : 0;
  e.arg = 0;
  e.depth = 0;
  if (e.errlen > 0) err[0] = '\0';
  if (n > 0)
    first = lua_absindex(L, first);
  if (n < 0 || (n > 0 && (first < 1 || first > top - n + 1))) {
    mb_codec_sb sb;
    mb_codec_sbinit(&sb, err, e.errlen);
    mb_codec_sbf(&sb, "bad stack range (%d values from index %d, top %d)",
                 n, first, top);
    return -1;
  }
  if (mb_buf_reserve(out, 4)) {
    mb_codec_sb sb;
    mb_codec_sbinit(&sb, err, e.errlen);
    mb_codec_sbadds(&sb, "out of memory");
    return -1;
  }
  mb_codec_put32(out->data + out->len, (uint32_t)n);
  out->len += 4;
  for (i = 0; i < n; i++) {
    e.arg = i + 1;
    e.depth = 0;
    if (mb_codec_evalue(&e, first + i)) {
      lua_settop(L, top);
      out->len = start;
      return -1;
    }
  }
  return 0;
}

/*
** The fast path of an inline call's arguments: when the n values at stack
** indices 1..n are all nil, booleans, numbers or strings and fit in cap
** bytes, encode them into p, with no buffer to grow and no path to keep.
** Returns the length, or -1: the general encoder must do it (and says what
** is wrong, if anything is).
*/
int mb_codec_encode_flat (lua_State *L, int n, char *p, size_t cap) {
  size_t len = 4;
  int i;
  if (cap < 4) return -1;
  mb_codec_put32(p, (uint32_t)n);
  for (i = 1; i <= n; i++) {
    if (lua_isinteger(L, i)) {  /* first: integers are the common case */
      if (cap - len < 9) return -1;
      p[len] = (char)MB_CODEC_INT;
      mb_codec_put64(p + len + 1, (uint64_t)lua_tointeger(L, i));
      len += 9;
      continue;
    }
    switch (lua_type(L, i)) {
      case LUA_TNIL:
        if (len >= cap) return -1;
        p[len++] = (char)MB_CODEC_NIL;
        break;
      case LUA_TBOOLEAN:
        if (len >= cap) return -1;
        p[len++] = (char)(lua_toboolean(L, i) ? MB_CODEC_TRUE : MB_CODEC_FALSE);
        break;
      case LUA_TNUMBER: {  /* a float: integers were taken above */
        lua_Number x = lua_tonumber(L, i);
        uint64_t u;
        if (cap - len < 9) return -1;
        p[len] = (char)MB_CODEC_FLOAT;
        memcpy(&u, &x, 8);
        mb_codec_put64(p + len + 1, u);
        len += 9;
        break;
      }
      case LUA_TSTRING: {
        size_t l;
        const char *s = lua_tolstring(L, i, &l);
        if (cap - len < 5 || l > cap - len - 5) return -1;
        p[len] = (char)MB_CODEC_STRING;
        mb_codec_put32(p + len + 1, (uint32_t)l);
        memcpy(p + len + 5, s, l);
        len += 5 + l;
        break;
      }
      default:
        return -1;
    }
  }
  return (int)len;
}

/* }====================================================== */


/*
** {======================================================
** Decoder: message -> Lua values
** =======================================================
*/

typedef struct mb_codec_dec {
  lua_State *L;
  const unsigned char *p;
  size_t len, pos;
  char *err;
  size_t errlen;
} mb_codec_dec;


MB_CODEC_PRINTF(3, 4)
static int mb_codec_dfail (mb_codec_dec *d, size_t at, const char *fmt, ...) {
  mb_codec_sb sb;
  va_list ap;
  mb_codec_sbinit(&sb, d->err, d->errlen);
  mb_codec_sbf(&sb, "malformed message at offset %zu: ", at);
  va_start(ap, fmt);
  mb_codec_sbvf(&sb, fmt, ap);
  va_end(ap);
  return -1;
}


static int mb_codec_need (mb_codec_dec *d, size_t n) {
  if (d->len - d->pos < n)
    return mb_codec_dfail(d, d->pos, "truncated (need %zu bytes, have %zu)",
                          n, d->len - d->pos);
  return 0;
}


/* read a u32 count or length; never trust it beyond the bytes left */
static int mb_codec_count (mb_codec_dec *d, size_t *n) {
  if (mb_codec_need(d, 4)) return -1;
  *n = mb_codec_get32(d->p + d->pos);
  d->pos += 4;
  return 0;
}


static int mb_codec_hint (size_t n) {
  return (n > MB_CODEC_MAX_HINT) ? MB_CODEC_MAX_HINT : (int)n;
}


static int mb_codec_dvalue (mb_codec_dec *d, int depth);


/* Read the count of the container at at, nested depth deep, into *n and
** check it against the depth bound and the bytes left, where each of its
** entries takes at least per bytes. */
static int mb_codec_dopen (mb_codec_dec *d, int depth, size_t at, size_t per,
                           const char *what, size_t *n) {
  size_t left;
  if (mb_codec_count(d, n)) return -1;
  if (depth >= MB_CODEC_MAX_DECODE_DEPTH)
    return mb_codec_dfail(d, at, "nested too deeply (more than %d levels)",
                          MB_CODEC_MAX_DECODE_DEPTH);
  left = d->len - d->pos;
  if (per == 1 && *n > left)
    return mb_codec_dfail(d, at, "%s count %zu exceeds the %zu bytes left", what, *n, left);
  if (*n > left / per)
    return mb_codec_dfail(d, at, "%s count %zu exceeds what the %zu bytes left can hold",
                          what, *n, left);
  return 0;
}


static int mb_codec_darray (mb_codec_dec *d, int depth, size_t at) {
  lua_State *L = d->L;
  size_t n, i;
  if (mb_codec_dopen(d, depth, at, 1, "array", &n)) return -1; /* a value takes a byte */
  if (!lua_checkstack(L, 3)) /* nesting is bounded: only memory can lack */
    return mb_codec_dfail(d, at, "not enough memory");
  lua_createtable(L, mb_codec_hint(n), 0);
  for (i = 0; i < n; i++) {
    if (mb_codec_dvalue(d, depth + 1)) return -1;
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 0;
}


static int mb_codec_dmap (mb_codec_dec *d, int depth, size_t at) {
  lua_State *L = d->L;
  size_t n, i;
  if (mb_codec_dopen(d, depth, at, 5, "map", &n)) return -1; /* key length, value */
  if (!lua_checkstack(L, 4))
    return mb_codec_dfail(d, at, "not enough memory");
  lua_createtable(L, 0, mb_codec_hint(n));
  for (i = 0; i < n; i++) {
    size_t kat = d->pos, kl;
    if (mb_codec_count(d, &kl)) return -1;
    if (kl > d->len - d->pos)
      return mb_codec_dfail(d, kat, "key length %zu exceeds the %zu bytes left",
                            kl, d->len - d->pos);
    lua_pushlstring(L, (const char *)d->p + d->pos, kl);
    d->pos += kl;
    if (mb_codec_dvalue(d, depth + 1)) return -1;
    lua_rawset(L, -3);  /* a nil value simply leaves the key out */
  }
  return 0;
}


/* A table with integer keys (a Go map[int]T): count, then (key as 8
** bytes little-endian, value) pairs. */
static int mb_codec_dimap (mb_codec_dec *d, int depth, size_t at) {
  lua_State *L = d->L;
  size_t n, i;
  if (mb_codec_dopen(d, depth, at, 9, "map", &n)) return -1; /* 8-byte key, value */
  if (!lua_checkstack(L, 4))
    return mb_codec_dfail(d, at, "not enough memory");
  lua_createtable(L, 0, mb_codec_hint(n));
  for (i = 0; i < n; i++) {
    lua_Integer k;
    if (mb_codec_need(d, 8)) return -1;
    k = (lua_Integer)mb_codec_get64(d->p + d->pos);
    d->pos += 8;
    if (mb_codec_dvalue(d, depth + 1)) return -1;
    lua_rawseti(L, -2, k);  /* a nil value simply leaves the key out */
  }
  return 0;
}


static int mb_codec_dvalue (mb_codec_dec *d, int depth) {
  lua_State *L = d->L;
  size_t at = d->pos;
  int tag;
  if (mb_codec_need(d, 1)) return -1;
  tag = d->p[d->pos++];
  switch (tag) {
    case MB_CODEC_NIL:
      lua_pushnil(L);
      return 0;
    case MB_CODEC_FALSE:
    case MB_CODEC_TRUE:
      lua_pushboolean(L, tag == MB_CODEC_TRUE);
      return 0;
    case MB_CODEC_INT:
    case MB_CODEC_FLOAT: {
      uint64_t u;
      if (mb_codec_need(d, 8)) return -1;
      u = mb_codec_get64(d->p + d->pos);
      d->pos += 8;
      if (tag == MB_CODEC_INT)
        lua_pushinteger(L, (lua_Integer)u);
      else {
        lua_Number x;
        memcpy(&x, &u, 8);
        lua_pushnumber(L, x);
      }
      return 0;
    }
    case MB_CODEC_STRING: {
      size_t l;
      if (mb_codec_count(d, &l)) return -1;
      if (l > d->len - d->pos)
        return mb_codec_dfail(d, at,
                              "string length %zu exceeds the %zu bytes left",
                              l, d->len - d->pos);
      lua_pushlstring(L, (const char *)d->p + d->pos, l);
      d->pos += l;
      return 0;
    }
    case MB_CODEC_ARRAY:
      return mb_codec_darray(d, depth, at);
    case MB_CODEC_MAP:
      return mb_codec_dmap(d, depth, at);
    case MB_CODEC_IMAP:
      return mb_codec_dimap(d, depth, at);
    default:
      return mb_codec_dfail(d, at, "unknown tag 0x%02x", (unsigned)tag);
  }
}


int mb_codec_decode (lua_State *L, const char *data, size_t len,
                     char *err, size_t errlen) {
  mb_codec_dec d;
  int base;
  size_t n, i;
  /* One integer, the commonest result of all, before any of the rest. */
  if (data != NULL && len == 13 && mb_codec_get32((const unsigned char *)data) == 1 &&
      data[4] == MB_CODEC_INT && lua_checkstack(L, 1)) {
    lua_pushinteger(L, (lua_Integer)mb_codec_get64((const unsigned char *)data + 5));
    return 1;
  }
  base = lua_gettop(L);
  d.L = L;
  d.p = (const unsigned char *)data;
  d.len = (data == NULL) ? 0 : len;
  d.pos = 0;
  d.err = err;
  d.errlen = err ? errlen : 0;
  if (d.errlen > 0) err[0] = '\0';
  if (mb_codec_count(&d, &n)) return -1;
  if (n > d.len - d.pos)
    return mb_codec_dfail(&d, 0, "value count %zu exceeds the %zu bytes left",
                          n, d.len - d.pos);
  if (n > (size_t)(LUAI_MAXSTACK - 8) || n + 8 > (size_t)(LUAI_MAXSTACK - base))
    return mb_codec_dfail(&d, 0, "too many values (%zu) for the Lua stack", n);
  if (!lua_checkstack(L, (int)n + 3)) /* room in principle: memory lacks */
    return mb_codec_dfail(&d, 0, "not enough memory");
  for (i = 0; i < n; i++) {
    /* Integers and floats, the common results, are pushed right here. */
    if (d.len - d.pos >= 9 && (d.p[d.pos] == MB_CODEC_INT || d.p[d.pos] == MB_CODEC_FLOAT)) {
      uint64_t u = mb_codec_get64(d.p + d.pos + 1);
      if (d.p[d.pos] == MB_CODEC_INT)
        lua_pushinteger(L, (lua_Integer)u);
      else {
        lua_Number x;
        memcpy(&x, &u, 8);
        lua_pushnumber(L, x);
      }
      d.pos += 9;
      continue;
    }
    if (mb_codec_dvalue(&d, 0)) {
      lua_settop(L, base);
      return -1;
    }
  }
  if (d.pos != d.len) {
    lua_settop(L, base);
    return mb_codec_dfail(&d, d.pos, "%zu bytes of trailing garbage",
                          d.len - d.pos);
  }
  return (int)n;
}

/* }====================================================== */

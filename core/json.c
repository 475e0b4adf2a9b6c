/*
** json.c — the json module: require("json").
**
** Layer 3 (objects), a library module: it uses the error constructors
** (errors.c) and the run's limits (limit.c), nothing else of the core.
**
**   json.encode(v [, {indent = true|"  "|n, sort_keys = true}]) -> string
**   json.decode(s) -> v
**   json.null      decode's null; encodes as null
**   json.array(t)  marks t as an array (an empty unmarked table is {})
**
** The rules, in one place (README-json.md says the same to users):
** - Integers stay integers: a JSON number without '.' or exponent that
**   fits in an int64 decodes as a Lua integer ("-0" is the integer 0);
**   any other number is a float. Floats are written so that they read back
**   as the same double, and as a float ("1.0", "1e+300", "-0.0").
** - A table is an array when it is marked (json.array, or decoded from
**   an array) or when its first key is an integer; an array's keys must be
**   exactly 1..n. A table whose keys are all strings is an object. Any
**   other table (sparse, mixed, other key types) is an error, as are NaN,
**   the infinities, functions, threads, userdata other than json.null,
**   cycles and nesting deeper than MB_JSON_MAXDEPTH. Encode errors name
**   the path of the value ("$.tools[2].fn", Lua's 1-based indices).
** - Strings must be valid UTF-8 both ways (an encode error names the
**   path; a decode error the byte). Decode checks \u escapes, surrogate
**   pairs included; encode escapes '"', '\\' and control characters.
** - Decode errors give the 1-based byte offset and what was expected.
**   Duplicate keys: the last wins.
** - Nothing a script sets can run during encode or decode: tables are
**   read raw (no __index, __pairs, __len), options too.
**
** Memory: everything is Lua's: the output and scratch buffers are
** userdata anchored in a stack slot, so an error (memory included) that
** unwinds through here leaves them to the collector, and
** Options.MemoryLimit counts them. Work is charged to the run's
** instruction budget (one instruction per byte of JSON text) and its
** deadline is checked every MB_JSON_GRAIN bytes: the count hook cannot
** see inside a C function.
**
** Collector: an allocation here may run a finalizer (__gc), which is Lua
** code that may change the tables being encoded. Every pointer kept
** across an allocation points into an anchored string or into our own
** buffers, and a table that changes under the encoder gives an error
** (never a crash).
*/
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "json.h"
#include "limit.h"
#include "mb.h"

#define MB_JSON_MAXDEPTH 1000    /* nesting of arrays and objects, both ways */
#define MB_JSON_GRAIN (16 << 10) /* bytes of JSON text between limit checks */
#define MB_JSON_MAXNUM 1024      /* longest number decode reads */
#define MB_JSON_MAXINDENT 16     /* longest indent unit */
#define MB_JSON_PATHEND 8        /* a long path shows this many levels at each end */
#define MB_JSON_ARRAYRUN 32      /* array items decoded before the table is made */
#define MB_JSON_OBJECTRUN 16     /* object members decoded before the table is made */

/* The upvalues of encode, decode and array. */
#define MB_JSON_NULL lua_upvalueindex(1)  /* json.null */
#define MB_JSON_ARRAY lua_upvalueindex(2) /* the metatable marking arrays */

#define mb_json_noret static MB_NORETURN void
#define mb_json_isdigit(c) ((unsigned)((c) - '0') < 10u)

/* How encode writes each byte of a string: 0 as it is, 1 a byte that
** starts a multibyte UTF-8 sequence (validated first), else the letter of
** its escape ('u': \u00XX). Decode stops at the same bytes. */
static const unsigned char mb_json_esc[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* Exact powers of ten: a double holds each of them exactly. */
static const double mb_json_pow10[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

#define MB_JSON_2P53 9007199254740992.0 /* past it, a double skips integers */

/* The length of the valid UTF-8 sequence at s (*s >= 0x80, s < e), or 0.
** Unicode's table 3-7: no overlong forms, no surrogates, nothing past
** U+10FFFF. Each byte is looked at only if the ones before it were good,
** so a NUL terminator stops it even without e. */
static size_t mb_json_utf8(const unsigned char *s, const unsigned char *e) {
  unsigned c = s[0], lo = 0x80, hi = 0xbf;
  size_t n;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
  else
    return 0;
  if ((size_t)(e - s) < n || s[1] < lo || s[1] > hi) return 0;
  if (n > 2 && (s[2] & 0xc0) != 0x80) return 0;
  if (n > 3 && (s[3] & 0xc0) != 0x80) return 0;
  return n;
}

/* ---------------------------------------------------------------------
** Buffers: encode's output and decode's scratch for escaped strings.
** They start in the C struct; past that, in a userdata that replaces the
** previous one in the buffer's stack slot (so Lua owns every byte).
** ------------------------------------------------------------------- */
typedef struct mb_json_buf {
  char *p;
  size_t len, cap;
  int slot; /* stack slot anchoring p once it left init */
  char init[512];
} mb_json_buf;

/* Start in init; slot is the stack slot that will anchor a bigger block. */
static void mb_json_buf_init(mb_json_buf *b, int slot) {
  b->p = b->init;
  b->len = 0;
  b->cap = sizeof b->init;
  b->slot = slot;
}

/* Make room for n more bytes: at least double, so appends are amortized
** O(1). A memory error here is Lua's own ("not enough memory"). */
static void mb_json_grow(lua_State *L, mb_json_buf *b, size_t n) {
  size_t cap = b->cap;
  char *p;
  if (n > (size_t)-1 / 4 - b->len) mb_errors_throw(L, "runtime", NULL, "json: text too large");
  while (cap - b->len < n) cap *= 2;
  p = (char *)lua_newuserdatauv(L, cap, 0);
  memcpy(p, b->p, b->len);
  lua_replace(L, b->slot);
  b->p = p;
  b->cap = cap;
}

/* Room for n more bytes: where they go. */
static inline char *mb_json_room(lua_State *L, mb_json_buf *b, size_t n) {
  if (b->cap - b->len < n) mb_json_grow(L, b, n);
  return b->p + b->len;
}

/* Append n bytes (or, below, one). */
static inline void mb_json_put(lua_State *L, mb_json_buf *b, const void *s, size_t n) {
  memcpy(mb_json_room(L, b, n), s, n);
  b->len += n;
}

static inline void mb_json_putc(lua_State *L, mb_json_buf *b, char c) {
  *mb_json_room(L, b, 1) = c;
  b->len++;
}

/* ---------------------------------------------------------------------
** Numbers.
** ------------------------------------------------------------------- */

/* Write v in decimal at p (room for 20 bytes); return the length. */
static size_t mb_json_fmt_int(char *p, lua_Integer v) {
  char tmp[24];
  size_t n = 0, len = 0;
  lua_Unsigned u = v < 0 ? 0u - (lua_Unsigned)v : (lua_Unsigned)v;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0) p[len++] = '-';
  while (n > 0) p[len++] = tmp[--n];
  return len;
}

/* Floats are written by Grisu3 (Loitsch, "Printing floating-point numbers
** quickly and accurately", PLDI 2010): the digits of the shortest decimal
** inside the interval of reals that round to the double, found with 64-bit
** integer arithmetic. That arithmetic is off by up to one unit at each
** end of the interval; when the answer depends on it (about 0.5% of
** doubles), Grisu3 says so and the exact, slow way is taken instead. No
** locale either way. */
typedef struct mb_json_fp {
  uint64_t f; /* value: f * 2^e */
  int e;
} mb_json_fp;

/* 10^(-348 + 8i) as 64-bit significands (top bit set, rounded to
** nearest) and binary exponents; computed exactly with Python's
** fractions. */
static const mb_json_fp mb_json_cached[87] = {
    {0xfa8fd5a0081c0288ull, -1220}, {0xbaaee17fa23ebf76ull, -1193}, {0x8b16fb203055ac76ull, -1166},
    {0xcf42894a5dce35eaull, -1140}, {0x9a6bb0aa55653b2dull, -1113}, {0xe61acf033d1a45dfull, -1087},
    {0xab70fe17c79ac6caull, -1060}, {0xff77b1fcbebcdc4full, -1034}, {0xbe5691ef416bd60cull, -1007},
    {0x8dd01fad907ffc3cull, -980}, {0xd3515c2831559a83ull, -954}, {0x9d71ac8fada6c9b5ull, -927},
    {0xea9c227723ee8bcbull, -901}, {0xaecc49914078536dull, -874}, {0x823c12795db6ce57ull, -847},
    {0xc21094364dfb5637ull, -821}, {0x9096ea6f3848984full, -794}, {0xd77485cb25823ac7ull, -768},
    {0xa086cfcd97bf97f4ull, -741}, {0xef340a98172aace5ull, -715}, {0xb23867fb2a35b28eull, -688},
    {0x84c8d4dfd2c63f3bull, -661}, {0xc5dd44271ad3cdbaull, -635}, {0x936b9fcebb25c996ull, -608},
    {0xdbac6c247d62a584ull, -582}, {0xa3ab66580d5fdaf6ull, -555}, {0xf3e2f893dec3f126ull, -529},
    {0xb5b5ada8aaff80b8ull, -502}, {0x87625f056c7c4a8bull, -475}, {0xc9bcff6034c13053ull, -449},
    {0x964e858c91ba2655ull, -422}, {0xdff9772470297ebdull, -396}, {0xa6dfbd9fb8e5b88full, -369},
    {0xf8a95fcf88747d94ull, -343}, {0xb94470938fa89bcfull, -316}, {0x8a08f0f8bf0f156bull, -289},
    {0xcdb02555653131b6ull, -263}, {0x993fe2c6d07b7facull, -236}, {0xe45c10c42a2b3b06ull, -210},
    {0xaa242499697392d3ull, -183}, {0xfd87b5f28300ca0eull, -157}, {0xbce5086492111aebull, -130},
    {0x8cbccc096f5088ccull, -103}, {0xd1b71758e219652cull, -77}, {0x9c40000000000000ull, -50},
    {0xe8d4a51000000000ull, -24}, {0xad78ebc5ac620000ull, 3}, {0x813f3978f8940984ull, 30},
    {0xc097ce7bc90715b3ull, 56}, {0x8f7e32ce7bea5c70ull, 83}, {0xd5d238a4abe98068ull, 109},
    {0x9f4f2726179a2245ull, 136}, {0xed63a231d4c4fb27ull, 162}, {0xb0de65388cc8ada8ull, 189},
    {0x83c7088e1aab65dbull, 216}, {0xc45d1df942711d9aull, 242}, {0x924d692ca61be758ull, 269},
    {0xda01ee641a708deaull, 295}, {0xa26da3999aef774aull, 322}, {0xf209787bb47d6b85ull, 348},
    {0xb454e4a179dd1877ull, 375}, {0x865b86925b9bc5c2ull, 402}, {0xc83553c5c8965d3dull, 428},
    {0x952ab45cfa97a0b3ull, 455}, {0xde469fbd99a05fe3ull, 481}, {0xa59bc234db398c25ull, 508},
    {0xf6c69a72a3989f5cull, 534}, {0xb7dcbf5354e9beceull, 561}, {0x88fcf317f22241e2ull, 588},
    {0xcc20ce9bd35c78a5ull, 614}, {0x98165af37b2153dfull, 641}, {0xe2a0b5dc971f303aull, 667},
    {0xa8d9d1535ce3b396ull, 694}, {0xfb9b7cd9a4a7443cull, 720}, {0xbb764c4ca7a44410ull, 747},
    {0x8bab8eefb6409c1aull, 774}, {0xd01fef10a657842cull, 800}, {0x9b10a4e5e9913129ull, 827},
    {0xe7109bfba19c0c9dull, 853}, {0xac2820d9623bf429ull, 880}, {0x80444b5e7aa7cf85ull, 907},
    {0xbf21e44003acdd2dull, 933}, {0x8e679c2f5e44ff8full, 960}, {0xd433179d9c8cb841ull, 986},
    {0x9e19db92b4e31ba9ull, 1013}, {0xeb96bf6ebadf77d9ull, 1039}, {0xaf87023b9bf0ee6bull, 1066},
};

static const uint64_t mb_json_pow10u[20] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
    100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
    10000000000000ull, 100000000000000ull, 1000000000000000ull, 10000000000000000ull,
    100000000000000000ull, 1000000000000000000ull, 10000000000000000000ull,
};

/* x with its top bit set (same value). */
static mb_json_fp mb_json_fp_norm(mb_json_fp x) {
  int s = __builtin_clzll(x.f);
  x.f <<= s;
  x.e -= s;
  return x;
}

/* x * y, the product's high 64 bits rounded. */
static mb_json_fp mb_json_fp_mul(mb_json_fp x, mb_json_fp y) {
  unsigned __int128 p = (unsigned __int128)x.f * y.f;
  mb_json_fp r;
  r.f = (uint64_t)(p >> 64) + ((uint64_t)p >> 63);
  r.e = x.e + y.e + 64;
  return r;
}

/* The cached power c = 10^-K that brings a product with e's exponent into
** [-60, -32]: then its integral part fits 32 bits. */
static mb_json_fp mb_json_fp_cached(int e, int *K) {
  double dk = (-61 - e) * 0.30102999566398114 + 347;
  int k = (int)dk;
  unsigned i;
  if (dk - k > 0.0) k++;
  i = (unsigned)((k >> 3) + 1);
  *K = -(-348 + (int)(i << 3));
  return mb_json_cached[i];
}

/* Move the last digit down while that brings the decimal closer to the
** double; then say whether the result is certain to be the closest and
** inside the interval, given the unit of error (0: not certain). */
static int mb_json_round_weed(char *buf, int len, uint64_t high_w, uint64_t unsafe, uint64_t rest,
                              uint64_t ten_kappa, uint64_t unit) {
  uint64_t small = high_w - unit, big = high_w + unit;
  while (rest < small && unsafe - rest >= ten_kappa &&
         (rest + ten_kappa < small || small - rest >= rest + ten_kappa - small)) {
    buf[len - 1]--;
    rest += ten_kappa;
  }
  if (rest < big && unsafe - rest >= ten_kappa &&
      (rest + ten_kappa < big || big - rest > rest + ten_kappa - big))
    return 0;
  return 2 * unit <= rest && rest <= unsafe - 4 * unit;
}

/* Generate the digits of the interval's top (widened by the unit of
** error) until what is left is inside the interval; return their count,
** or 0 when round_weed is not certain. */
static int mb_json_grisu_digits(mb_json_fp lo, mb_json_fp w, mb_json_fp hi, char *buf, int *K) {
  uint64_t unit = 1, too_high = hi.f + unit, unsafe = too_high - (lo.f - unit), rest;
  int sh = -w.e, kappa = 1, len = 0;
  uint64_t one = (uint64_t)1 << sh, frac = too_high & (one - 1);
  uint32_t integ = (uint32_t)(too_high >> sh), div;
  while (kappa < 10 && integ >= mb_json_pow10u[kappa]) kappa++;
  div = (uint32_t)mb_json_pow10u[kappa - 1];
  while (kappa > 0) {
    buf[len++] = (char)('0' + integ / div);
    integ %= div;
    kappa--;
    rest = ((uint64_t)integ << sh) + frac;
    if (rest < unsafe) {
      *K += kappa;
      return mb_json_round_weed(buf, len, too_high - w.f, unsafe, rest, (uint64_t)div << sh, unit) ? len : 0;
    }
    div /= 10;
  }
  for (;;) {
    frac *= 10;
    unit *= 10;
    unsafe *= 10;
    buf[len++] = (char)('0' + (frac >> sh));
    frac &= one - 1;
    kappa--;
    if (frac < unsafe) {
      *K += kappa;
      return mb_json_round_weed(buf, len, (too_high - w.f) * unit, unsafe, frac, one, unit) ? len : 0;
    }
    if (len >= 20) return 0; /* cannot happen for a double; stay in buf */
  }
}

/* The digits of d (finite, > 0) in buf (17 at most): d = digits * 10^K;
** 0 when Grisu3 is not certain. */
static int mb_json_grisu3(double d, char *buf, int *K) {
  uint64_t bits;
  int be;
  mb_json_fp v, pl, mi, c;
  memcpy(&bits, &d, sizeof bits);
  be = (int)((bits >> 52) & 0x7ff);
  v.f = bits & (((uint64_t)1 << 52) - 1);
  if (be != 0) {
    v.f |= (uint64_t)1 << 52;
    v.e = be - 1075;
  } else {
    v.e = -1074;
  }
  /* The interval's ends, halfway to the neighbours (closer below a power
  ** of two), on the exponent of d normalized. */
  pl.f = (v.f << 1) + 1;
  pl.e = v.e - 1;
  pl = mb_json_fp_norm(pl);
  if (v.f == (uint64_t)1 << 52) {
    mi.f = (v.f << 2) - 1;
    mi.e = v.e - 2;
  } else {
    mi.f = (v.f << 1) - 1;
    mi.e = v.e - 1;
  }
  mi.f <<= mi.e - pl.e;
  mi.e = pl.e;
  c = mb_json_fp_cached(pl.e, K);
  return mb_json_grisu_digits(mb_json_fp_mul(mi, c), mb_json_fp_mul(mb_json_fp_norm(v), c),
                              mb_json_fp_mul(pl, c), buf, K);
}

/* The exact way: the shortest of %.15e, %.16e and %.17e that reads back
** (with 15 digits or fewer, %.15e's is the shortest there is: decimals
** of 15 digits lie more than one double apart). Its digits go to buf
** (trailing zeros dropped), as Grisu3's. */
static int mb_json_exact_digits(double d, char *buf, int *K) {
  char tmp[40];
  int prec, n = 0, i;
  for (prec = 14; prec <= 16; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec, d);
    if (prec == 16 || strtod(tmp, NULL) == d) break;
  }
  for (i = 0; tmp[i] != 'e'; i++)
    if (mb_json_isdigit(tmp[i])) buf[n++] = tmp[i];
  while (n > 1 && buf[n - 1] == '0') n--;
  *K = atoi(tmp + i + 1) - (n - 1);
  return n;
}

/* Write the finite d at p (room for 32 bytes) so that it reads back as
** the same double, and as a float: with a point ("1.0", "0.001") from
** 1e-6 to 1e21, as JavaScript does, else with an exponent ("1e+300"). */
static size_t mb_json_fmt_float(char *p, double d) {
  char digits[32];
  int K = 0, n, point, i;
  size_t len = 0;
  if (signbit(d)) p[len++] = '-', d = -d;
  if (d == 0) {
    memcpy(p + len, "0.0", 3);
    return len + 3;
  }
  n = mb_json_grisu3(d, digits, &K);
  if (n == 0) n = mb_json_exact_digits(d, digits, &K);
  point = n + K; /* d = 0.digits * 10^point */
  if (point > 0 && point <= 21) {
    for (i = 0; i < point; i++) p[len++] = i < n ? digits[i] : '0';
    p[len++] = '.';
    if (point >= n) p[len++] = '0';
    for (; i < n; i++) p[len++] = digits[i];
  } else if (point <= 0 && point > -6) {
    p[len++] = '0';
    p[len++] = '.';
    for (i = point; i < 0; i++) p[len++] = '0';
    memcpy(p + len, digits, (size_t)n);
    len += (size_t)n;
  } else {
    p[len++] = digits[0];
    if (n > 1) {
      p[len++] = '.';
      memcpy(p + len, digits + 1, (size_t)n - 1);
      len += (size_t)n - 1;
    }
    len += (size_t)snprintf(p + len, 8, "e%+d", point - 1);
  }
  return len;
}

/* ---------------------------------------------------------------------
** Encoding.
** ------------------------------------------------------------------- */

/* Where the encoder is, for error messages and cycles: at each depth,
** the table being written and the key (a stack slot holding a string) or
** array index being written in it. */
typedef struct mb_json_level {
  const void *table;
  int key;           /* stack slot of the current key, or 0: index */
  lua_Integer index; /* the current array index */
} mb_json_level;

typedef struct mb_json_enc {
  lua_State *L;
  mb_json_buf out;
  size_t check;   /* out.len at which the limits are next looked at */
  size_t charged; /* out.len charged to the run so far */
  int sort_keys;
  size_t indent_len; /* 0: compact */
  char indent[MB_JSON_MAXINDENT];
  int depth; /* tables open */
  mb_json_level level[MB_JSON_MAXDEPTH + 1];
} mb_json_enc;

/* Add one path element (level j's key or index) to the path in b. A key
** that is an identifier is written .key, any other ["key"] (cut short
** when long), with Lua's escapes. */
static void mb_json_path_elem(mb_json_enc *e, luaL_Buffer *b, int j) {
  lua_State *L = e->L;
  const mb_json_level *lv = &e->level[j];
  size_t n, i;
  const char *s;
  int ident;
  if (lv->key == 0) {
    lua_pushfstring(L, "[%I]", lv->index);
    luaL_addvalue(b);
    return;
  }
  s = lua_tolstring(L, lv->key, &n);
  ident = n > 0 && n <= 64 && !mb_json_isdigit(s[0]);
  for (i = 0; i < n && ident; i++) {
    unsigned char c = (unsigned char)s[i];
    ident = c == '_' || mb_json_isdigit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
  }
  if (ident) {
    luaL_addchar(b, '.');
    luaL_addlstring(b, s, n);
    return;
  }
  luaL_addstring(b, "[\"");
  for (i = 0; i < n && i < 40; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      luaL_addchar(b, '\\');
      luaL_addchar(b, (char)c);
    } else if (c < 0x20 || c == 0x7f) {
      lua_pushfstring(L, "\\%d", (int)c);
      luaL_addvalue(b);
    } else {
      luaL_addchar(b, (char)c);
    }
  }
  if (n > 40) luaL_addstring(b, "...");
  luaL_addstring(b, "\"]");
}

/* Push the path down to depth upto: "$", "$.tools[2].fn". A path deeper
** than twice MB_JSON_PATHEND shows its two ends. */
static void mb_json_path(mb_json_enc *e, int upto) {
  lua_State *L = e->L;
  luaL_Buffer b;
  int j;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '$');
  for (j = 1; j <= upto; j++) {
    if (upto > 2 * MB_JSON_PATHEND && j == MB_JSON_PATHEND + 1) {
      lua_pushfstring(L, "...(%d levels)...", upto - 2 * MB_JSON_PATHEND);
      luaL_addvalue(&b);
      j = upto - MB_JSON_PATHEND;
      continue;
    }
    mb_json_path_elem(e, &b, j);
  }
  luaL_pushresult(&b);
}

/* Raise json.encode's error: what went wrong, at the path down to upto. */
mb_json_noret mb_json_enc_fail(mb_json_enc *e, int upto, const char *fmt, ...) {
  lua_State *L = e->L;
  const char *msg, *path;
  va_list ap;
  luaL_checkstack(L, MB_ERRORS_ROOM, "json.encode");
  va_start(ap, fmt);
  msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  mb_json_path(e, upto);
  path = lua_tostring(L, -1);
  mb_errors_throw(L, "runtime", "json.encode", "json.encode: %s at %s", msg, path);
  mb_unreachable();
}

/* Raise the error for the key at idx of the table at the current depth,
** a key no JSON text can have there (array says whether the table was
** being written as an array, and marked whether it is marked one). */
mb_json_noret mb_json_enc_badkey(mb_json_enc *e, int idx, int array, int marked) {
  lua_State *L = e->L;
  int up = e->depth - 1;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    if (marked)
      mb_json_enc_fail(e, up, "an array (json.array) with the string key \"%s\"", lua_tostring(L, idx));
    mb_json_enc_fail(e, up, "a table with both string and integer keys (\"%s\")", lua_tostring(L, idx));
  case LUA_TNUMBER:
    if (!lua_isinteger(L, idx))
      mb_json_enc_fail(e, up, "a table with the key %f (keys must be strings, or 1..n)",
                       (double)lua_tonumber(L, idx));
    if (!array)
      mb_json_enc_fail(e, up, "a table with both string and integer keys (%I)", lua_tointeger(L, idx));
    mb_json_enc_fail(e, up, "an array with the key %I (its keys must be 1..n)", lua_tointeger(L, idx));
  default:
    mb_json_enc_fail(e, up, "a table with a %s key (keys must be strings, or 1..n)",
                     lua_typename(L, lua_type(L, idx)));
  }
}

/* Charge what was written since the last look to the run, and look at its
** limits (raising if it is over). */
static void mb_json_enc_tick(mb_json_enc *e) {
  mb_limit_charge(e->L, (int64_t)(e->out.len - e->charged));
  e->charged = e->out.len;
  e->check = e->out.len + MB_JSON_GRAIN;
}

static void mb_json_enc_value(mb_json_enc *e, int idx);

/* Before an item of the container at the current depth: a comma, and
** with indent a new line and the depth's indentation. */
static void mb_json_enc_sep(mb_json_enc *e, int first) {
  lua_State *L = e->L;
  char *p;
  size_t i, n = (size_t)e->depth * e->indent_len;
  if (!first) mb_json_putc(L, &e->out, ',');
  if (e->indent_len == 0) return;
  p = mb_json_room(L, &e->out, n + 1);
  *p++ = '\n';
  for (i = 0; i < (size_t)e->depth; i++, p += e->indent_len) memcpy(p, e->indent, e->indent_len);
  e->out.len += n + 1;
}

/* Close the container at the current depth (any: it had items). */
static void mb_json_enc_close(mb_json_enc *e, int any, char c) {
  if (any && e->indent_len > 0) {
    e->depth--;
    mb_json_enc_sep(e, 1);
    e->depth++;
  }
  mb_json_putc(e->L, &e->out, c);
}

/* A string, in quotes, escaped; it must be valid UTF-8 (key: it is an
** object's key, so an error names the table, not a value). */
static void mb_json_enc_string(mb_json_enc *e, const char *str, size_t n, int key) {
  lua_State *L = e->L;
  mb_json_buf *b = &e->out;
  const unsigned char *s = (const unsigned char *)str, *end = s + n, *run = s;
  mb_json_room(L, b, n + 2);
  b->p[b->len++] = '"';
  while (s < end) {
    unsigned char c = mb_json_esc[*s];
    char *p;
    if (c == 0) {
      s++;
      continue;
    }
    if (c == 1) {
      size_t k = mb_json_utf8(s, end);
      if (k == 0) {
        if (key) mb_json_enc_fail(e, e->depth - 1, "a key that is not valid UTF-8 (byte %d)", (int)(s - (const unsigned char *)str) + 1);
        mb_json_enc_fail(e, e->depth, "a string that is not valid UTF-8 (byte %d)", (int)(s - (const unsigned char *)str) + 1);
      }
      s += k;
      continue;
    }
    mb_json_put(L, b, run, (size_t)(s - run));
    p = mb_json_room(L, b, 6);
    *p++ = '\\';
    *p++ = (char)c;
    if (c == 'u') {
      static const char hex[] = "0123456789abcdef";
      *p++ = '0';
      *p++ = '0';
      *p++ = hex[*s >> 4];
      *p++ = hex[*s & 15];
    }
    b->len = (size_t)(p - b->p);
    run = ++s;
  }
  mb_json_put(L, b, run, (size_t)(s - run));
  mb_json_putc(L, b, '"');
}

/* A number: an integer as it is, a float finite and with a point. */
static void mb_json_enc_number(mb_json_enc *e, int idx) {
  lua_State *L = e->L;
  char *p = mb_json_room(L, &e->out, 32);
  if (lua_isinteger(L, idx)) {
    e->out.len += mb_json_fmt_int(p, lua_tointeger(L, idx));
  } else {
    double d = (double)lua_tonumber(L, idx);
    if (isnan(d)) mb_json_enc_fail(e, e->depth, "cannot encode NaN");
    if (isinf(d)) mb_json_enc_fail(e, e->depth, "cannot encode %s", d > 0 ? "inf" : "-inf");
    e->out.len += mb_json_fmt_float(p, d);
  }
}

/* An array: the first key and value are on the stack. Keys that come in
** order 1, 2, 3... (the usual case: Lua traverses the array part in
** order) are written as they come; if one comes out of order, the rest
** must make up next..max, written by index. */
static void mb_json_enc_array(mb_json_enc *e, int t, int marked) {
  lua_State *L = e->L;
  mb_json_level *lv = &e->level[e->depth];
  lua_Integer next = 1, count = 0, max, i;
  int more = 1;
  mb_json_putc(L, &e->out, '[');
  while (more) {
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) != next) break;
    lv->index = next;
    mb_json_enc_sep(e, next == 1);
    mb_json_enc_value(e, lua_gettop(L));
    lua_pop(L, 1);
    next++;
    more = lua_next(L, t);
  }
  if (more) {
    max = next - 1;
    do {
      if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < next) mb_json_enc_badkey(e, -2, 1, marked);
      if (lua_tointeger(L, -2) > max) max = lua_tointeger(L, -2);
      count++;
      lua_pop(L, 1);
    } while (lua_next(L, t));
    if (count != max - (next - 1))
      mb_json_enc_fail(e, e->depth - 1, "a sparse array (the largest key is %I, the item count %I)",
                       max, count + next - 1);
    for (i = next; i <= max; i++) {
      if (lua_rawgeti(L, t, i) == LUA_TNIL)
        mb_json_enc_fail(e, e->depth - 1, "an array that changed while it was encoded");
      lv->index = i;
      mb_json_enc_sep(e, i == 1);
      mb_json_enc_value(e, lua_gettop(L));
      lua_pop(L, 1);
    }
    next = max + 1;
  }
  lv->index = 0;
  mb_json_enc_close(e, next > 1, ']');
}

/* One member: the key (a string) at k, the value on the top. */
static void mb_json_enc_member(mb_json_enc *e, int k, int first) {
  lua_State *L = e->L;
  size_t n;
  const char *s = lua_tolstring(L, k, &n);
  e->level[e->depth].key = k;
  mb_json_enc_sep(e, first);
  mb_json_enc_string(e, s, n, 1);
  if (e->indent_len > 0)
    mb_json_put(L, &e->out, ": ", 2);
  else
    mb_json_putc(L, &e->out, ':');
  mb_json_enc_value(e, lua_gettop(L));
}

/* An object, in the order lua_next gives. */
static void mb_json_enc_object(mb_json_enc *e, int t) {
  lua_State *L = e->L;
  int first = 1;
  mb_json_putc(L, &e->out, '{');
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING) mb_json_enc_badkey(e, -2, 0, 0);
    mb_json_enc_member(e, lua_gettop(L) - 1, first);
    first = 0;
    lua_pop(L, 1);
  }
  e->level[e->depth].key = 0;
  mb_json_enc_close(e, !first, '}');
}

typedef struct mb_json_key {
  const char *s;
  size_t n;
  lua_Integer slot; /* its index in the anchoring list */
} mb_json_key;

/* Byte order, a prefix first: what sort_keys promises. */
static int mb_json_key_cmp(const void *a, const void *b) {
  const mb_json_key *x = (const mb_json_key *)a, *y = (const mb_json_key *)b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c != 0 ? c : (x->n > y->n) - (x->n < y->n);
}

/* An object with its keys in byte order (sort_keys). The keys are kept
** in a list (so a finalizer that deletes one cannot free a string we
** point to) and sorted in a userdata array. */
static void mb_json_enc_sorted(mb_json_enc *e, int t) {
  lua_State *L = e->L;
  lua_Integer n = 0, i = 0, j;
  mb_json_key *keys;
  int list, first = 1;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING) mb_json_enc_badkey(e, -2, 0, 0);
    n++;
    lua_pop(L, 1);
  }
  if ((size_t)n > ((size_t)-1 / 2) / sizeof *keys)
    mb_errors_throw(L, "runtime", "json.encode", "json.encode: too many keys");
  lua_createtable(L, (int)(n < INT32_MAX ? n : INT32_MAX), 0);
  list = lua_gettop(L);
  keys = (mb_json_key *)lua_newuserdatauv(L, (size_t)n * sizeof *keys, 0);
  lua_pushnil(L);
  while (i < n && lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING) mb_json_enc_badkey(e, -2, 0, 0);
    lua_pushvalue(L, -2);
    lua_rawseti(L, list, i + 1);
    keys[i].s = lua_tolstring(L, -2, &keys[i].n);
    keys[i].slot = i + 1;
    i++;
    lua_pop(L, 1);
  }
  if (i == n && n > 0) lua_pop(L, 1); /* the key lua_next left (it stopped early) */
  qsort(keys, (size_t)i, sizeof *keys, mb_json_key_cmp);
  mb_json_putc(L, &e->out, '{');
  for (j = 0; j < i; j++) {
    lua_rawgeti(L, list, keys[j].slot);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) != LUA_TNIL) { /* nil: a finalizer deleted it */
      mb_json_enc_member(e, lua_gettop(L) - 1, first);
      first = 0;
    }
    lua_pop(L, 2);
  }
  e->level[e->depth].key = 0;
  mb_json_enc_close(e, !first, '}');
  lua_pop(L, 2);
}

/* A table: an array if marked or if its first key is an integer, an
** object if its first key is a string; checked for cycles and depth. */
static void mb_json_enc_table(mb_json_enc *e, int t) {
  lua_State *L = e->L;
  const void *p = lua_topointer(L, t);
  int d = e->depth + 1, i, marked = 0;
  if (d > MB_JSON_MAXDEPTH) mb_json_enc_fail(e, e->depth, "nesting deeper than %d levels", MB_JSON_MAXDEPTH);
  for (i = 1; i < d; i++) {
    if (e->level[i].table == p) {
      luaL_checkstack(L, MB_ERRORS_ROOM, "json.encode");
      mb_json_path(e, e->depth);
      mb_json_path(e, i - 1);
      mb_errors_throw(L, "runtime", "json.encode", "json.encode: a cycle at %s (the table at %s again)",
                     lua_tostring(L, -2), lua_tostring(L, -1));
    }
  }
  if (!mb_limit_checkstack(L, 8)) mb_json_enc_fail(e, e->depth, "a stack overflow");
  e->depth = d;
  e->level[d].table = p;
  e->level[d].key = 0;
  e->level[d].index = 0;
  if (lua_getmetatable(L, t)) {
    marked = lua_rawequal(L, -1, MB_JSON_ARRAY);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  if (!lua_next(L, t)) {
    mb_json_put(L, &e->out, marked ? "[]" : "{}", 2);
  } else if (lua_type(L, -2) == LUA_TSTRING && !marked) {
    lua_pop(L, 2);
    if (e->sort_keys)
      mb_json_enc_sorted(e, t);
    else
      mb_json_enc_object(e, t);
  } else {
    mb_json_enc_array(e, t, marked);
  }
  e->depth = d - 1;
}

/* The value at stack slot idx. */
static void mb_json_enc_value(mb_json_enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    mb_json_put(L, &e->out, "null", 4);
    break;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      mb_json_put(L, &e->out, "true", 4);
    else
      mb_json_put(L, &e->out, "false", 5);
    break;
  case LUA_TNUMBER:
    mb_json_enc_number(e, idx);
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    mb_json_enc_string(e, s, n, 0);
    break;
  }
  case LUA_TTABLE:
    mb_json_enc_table(e, idx);
    break;
  case LUA_TUSERDATA:
    if (lua_rawequal(L, idx, MB_JSON_NULL)) {
      mb_json_put(L, &e->out, "null", 4);
      break;
    }
    /* FALLTHROUGH */
  default:
    mb_json_enc_fail(e, e->depth, "cannot encode a %s", lua_typename(L, lua_type(L, idx)));
  }
  if (e->out.len >= e->check) mb_json_enc_tick(e);
}

/* The options table at slot 2 (read raw: its metatable is not asked). */
static void mb_json_enc_options(mb_json_enc *e) {
  lua_State *L = e->L;
  if (lua_isnoneornil(L, 2)) return;
  if (!lua_istable(L, 2))
    mb_errors_throw(L, "runtime", "json.encode", "json.encode: options must be a table, got %s",
                   luaL_typename(L, 2));
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    size_t n = 0;
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &n) : NULL;
    if (k != NULL && n == 9 && memcmp(k, "sort_keys", 9) == 0) {
      if (!lua_isboolean(L, -1))
        mb_errors_throw(L, "runtime", "json.encode", "json.encode: option sort_keys must be a boolean, got %s",
                       luaL_typename(L, -1));
      e->sort_keys = lua_toboolean(L, -1);
    } else if (k != NULL && n == 6 && memcmp(k, "indent", 6) == 0) {
      size_t len = 0, i;
      const char *s = NULL;
      if (lua_isboolean(L, -1)) {
        s = "  ";
        len = lua_toboolean(L, -1) ? 2 : 0;
      } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0 &&
                 lua_tointeger(L, -1) <= MB_JSON_MAXINDENT) {
        s = "                ";
        len = (size_t)lua_tointeger(L, -1);
      } else if (lua_type(L, -1) == LUA_TSTRING) {
        s = lua_tolstring(L, -1, &len);
        for (i = 0; i < len && len <= MB_JSON_MAXINDENT; i++)
          if (s[i] != ' ' && s[i] != '\t') break;
        if (i < len || len > MB_JSON_MAXINDENT) s = NULL;
      }
      if (s == NULL)
        mb_errors_throw(L, "runtime", "json.encode",
                       "json.encode: option indent must be a boolean, a number of spaces (0..%d) "
                       "or a string of up to %d spaces and tabs",
                       MB_JSON_MAXINDENT, MB_JSON_MAXINDENT);
      memcpy(e->indent, s, len);
      e->indent_len = len;
    } else if (k != NULL) {
      mb_errors_throw(L, "runtime", "json.encode", "json.encode: unknown option '%s'", k);
    } else {
      mb_errors_throw(L, "runtime", "json.encode", "json.encode: options must have string keys, got a %s key",
                     luaL_typename(L, -2));
    }
    lua_pop(L, 1);
  }
}

/* json.encode(v [, options]) -> string */
static int mb_json_encode(lua_State *L) {
  mb_json_enc e;
  if (lua_isnone(L, 1))
    mb_errors_throw(L, "runtime", "json.encode", "json.encode: expected a value to encode");
  e.L = L;
  e.sort_keys = 0;
  e.indent_len = 0;
  e.depth = 0;
  mb_json_enc_options(&e);
  lua_settop(L, 2);
  lua_pushnil(L); /* slot 3: the output's anchor */
  mb_json_buf_init(&e.out, 3);
  e.charged = 0;
  e.check = mb_limit_charge(L, 0) ? MB_JSON_GRAIN : (size_t)-1;
  mb_json_enc_value(&e, 1);
  if (e.check != (size_t)-1) mb_limit_charge(L, (int64_t)(e.out.len - e.charged));
  lua_pushlstring(L, e.out.p, e.out.len);
  return 1;
}

/* ---------------------------------------------------------------------
** Decoding: recursive descent over the string at slot 1. Lua strings end
** with a NUL, which no token contains: scanners stop at it without a
** bounds check, and the end is told from a NUL inside by its position.
** ------------------------------------------------------------------- */
typedef struct mb_json_dec {
  lua_State *L;
  const char *start, *end, *p;
  size_t check;   /* offset at which the limits are next looked at */
  size_t charged; /* offset charged to the run so far */
  int depth;
  mb_json_buf scratch; /* strings with escapes are unescaped here */
} mb_json_dec;

/* Raise json.decode's error: what went wrong, and at which byte. */
mb_json_noret mb_json_dec_fail(mb_json_dec *d, const char *at, const char *fmt, ...) {
  lua_State *L = d->L;
  const char *msg;
  va_list ap;
  lua_checkstack(L, 4);
  va_start(ap, fmt);
  msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  mb_errors_throw(L, "runtime", "json.decode", "json.decode: %s at byte %I", msg,
                 (lua_Integer)(at - d->start) + 1);
  mb_unreachable();
}

/* Raise "expected WHAT but found ..." for the byte at d->p. */
mb_json_noret mb_json_dec_expected(mb_json_dec *d, const char *what) {
  unsigned char c = (unsigned char)*d->p;
  char found[16];
  if (d->p == d->end)
    mb_json_dec_fail(d, d->p, "expected %s but found the end of the text", what);
  if (c > 0x20 && c < 0x7f)
    snprintf(found, sizeof found, "'%c'", c);
  else
    snprintf(found, sizeof found, "byte 0x%02x", c);
  mb_json_dec_fail(d, d->p, "expected %s but found %s", what, found);
}

/* Charge what was read since the last look to the run, and look at its
** limits (raising if it is over). */
static void mb_json_dec_tick(mb_json_dec *d) {
  size_t off = (size_t)(d->p - d->start);
  mb_limit_charge(d->L, (int64_t)(off - d->charged));
  d->charged = off;
  d->check = off + MB_JSON_GRAIN;
}

/* Skip JSON's whitespace (a NUL is not: it stops the loop at the end). */
static inline const char *mb_json_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
  return p;
}

/* The value of 4 hex digits at p, or -1. */
static long mb_json_hex4(const char *p) {
  long v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned char c = (unsigned char)p[i];
    if (mb_json_isdigit(c))
      v = v * 16 + (c - '0');
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
      v = v * 16 + ((c | 0x20) - 'a' + 10);
    else
      return -1;
  }
  return v;
}

/* The escape at p (a backslash) into the scratch buffer; returns what
** follows it. A \u escape of a surrogate must be a high one followed by
** a low one: together they are one character. */
static const char *mb_json_dec_escape(mb_json_dec *d, const char *p) {
  lua_State *L = d->L;
  long cp, lo;
  const char *q = p + 6;
  char *o;
  switch (p[1]) {
  case '"': case '\\': case '/':
    mb_json_putc(L, &d->scratch, p[1]);
    return p + 2;
  case 'b': mb_json_putc(L, &d->scratch, '\b'); return p + 2;
  case 'f': mb_json_putc(L, &d->scratch, '\f'); return p + 2;
  case 'n': mb_json_putc(L, &d->scratch, '\n'); return p + 2;
  case 'r': mb_json_putc(L, &d->scratch, '\r'); return p + 2;
  case 't': mb_json_putc(L, &d->scratch, '\t'); return p + 2;
  case 'u':
    break;
  default:
    d->p = p + 1;
    mb_json_dec_expected(d, "an escape (one of \"\\/bfnrtu)");
  }
  if ((cp = mb_json_hex4(p + 2)) < 0) mb_json_dec_fail(d, p, "an invalid \\u escape (4 hex digits must follow)");
  if (cp >= 0xdc00 && cp <= 0xdfff) mb_json_dec_fail(d, p, "a lone low surrogate (\\u%c%c%c%c)", p[2], p[3], p[4], p[5]);
  if (cp >= 0xd800 && cp <= 0xdbff) {
    if (q[0] != '\\' || q[1] != 'u' || (lo = mb_json_hex4(q + 2)) < 0xdc00 || lo > 0xdfff)
      mb_json_dec_fail(d, p, "a lone high surrogate (\\u%c%c%c%c not followed by a low one)", p[2], p[3], p[4], p[5]);
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    q += 6;
  }
  o = mb_json_room(L, &d->scratch, 4);
  if (cp < 0x80) {
    *o++ = (char)cp;
  } else if (cp < 0x800) {
    *o++ = (char)(0xc0 | (cp >> 6));
    *o++ = (char)(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    *o++ = (char)(0xe0 | (cp >> 12));
    *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
    *o++ = (char)(0x80 | (cp & 0x3f));
  } else {
    *o++ = (char)(0xf0 | (cp >> 18));
    *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
    *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
    *o++ = (char)(0x80 | (cp & 0x3f));
  }
  d->scratch.len = (size_t)(o - d->scratch.p);
  return q;
}

/* A string (d->p at its opening quote): pushed straight from the text
** when it has no escape, else unescaped in the scratch buffer. */
static void mb_json_dec_string(mb_json_dec *d) {
  lua_State *L = d->L;
  const unsigned char *p = (const unsigned char *)d->p + 1, *run = p;
  const unsigned char *end = (const unsigned char *)d->end;
  int copying = 0;
  for (;;) {
    unsigned char c = *p;
    if (mb_json_esc[c] == 0) {
      p++;
      continue;
    }
    if (c == '"') break;
    if (c >= 0x80) {
      size_t k = mb_json_utf8(p, end);
      if (k == 0) mb_json_dec_fail(d, (const char *)p, "invalid UTF-8 in a string");
      p += k;
      continue;
    }
    if (c != '\\') {
      if (p == end) mb_json_dec_fail(d, d->p, "a string with no closing quote");
      mb_json_dec_fail(d, (const char *)p, "a control character (byte 0x%c%c) in a string",
                       "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
    }
    if (!copying) {
      d->scratch.len = 0;
      copying = 1;
    }
    mb_json_put(L, &d->scratch, run, (size_t)(p - run));
    p = run = (const unsigned char *)mb_json_dec_escape(d, (const char *)p);
  }
  if (copying) {
    mb_json_put(L, &d->scratch, run, (size_t)(p - run));
    lua_pushlstring(L, d->scratch.p, d->scratch.len);
  } else {
    lua_pushlstring(L, (const char *)run, (size_t)(p - run));
  }
  d->p = (const char *)p + 1;
}

/* Take one more digit of a number's significand into m, while it holds
** 19 (an uint64 cannot overflow); past that the digits are dropped and
** the number is left to strtod. Leading zeros take no room. */
static inline void mb_json_digit(uint64_t *m, int *nd, int *dropped, char c) {
  if (*m == 0 && c == '0') return;
  if (*nd < 19) {
    *m = *m * 10 + (uint64_t)(c - '0');
    (*nd)++;
  } else {
    *dropped = 1;
  }
}

/* A number, by JSON's grammar (no leading zeros, no bare '.', no hex, no
** inf): an integer when it has neither fraction nor exponent and fits in
** an int64; else a float, computed exactly when the digits fit in 2^53
** and the power of ten is exact (one rounding: the correct result), else
** by strtod, which rounds correctly. */
static void mb_json_dec_number(mb_json_dec *d) {
  lua_State *L = d->L;
  const char *p = d->p, *s = p;
  uint64_t m = 0;
  int neg = 0, isfloat = 0, nd = 0, dropped = 0;
  long e10 = 0;
  if (*p == '-') neg = 1, p++;
  if (*p == '0') {
    p++;
    if (mb_json_isdigit(*p)) mb_json_dec_fail(d, s, "a number with a leading zero");
  } else if (mb_json_isdigit(*p)) {
    do {
      mb_json_digit(&m, &nd, &dropped, *p);
      p++;
    } while (mb_json_isdigit(*p));
  } else {
    d->p = p;
    mb_json_dec_expected(d, "a digit");
  }
  if (*p == '.') {
    isfloat = 1;
    p++;
    if (!mb_json_isdigit(*p)) {
      d->p = p;
      mb_json_dec_expected(d, "a digit after the decimal point");
    }
    do {
      mb_json_digit(&m, &nd, &dropped, *p);
      if (!dropped) e10--;
      p++;
    } while (mb_json_isdigit(*p));
  }
  if (*p == 'e' || *p == 'E') {
    long x = 0;
    int eneg = 0;
    isfloat = 1;
    p++;
    if (*p == '+' || *p == '-') eneg = *p++ == '-';
    if (!mb_json_isdigit(*p)) {
      d->p = p;
      mb_json_dec_expected(d, "a digit in the exponent");
    }
    do {
      if (x < 100000) x = x * 10 + (*p - '0');
      p++;
    } while (mb_json_isdigit(*p));
    e10 += eneg ? -x : x;
  }
  if (p - s > MB_JSON_MAXNUM) mb_json_dec_fail(d, s, "a number longer than %d bytes", MB_JSON_MAXNUM);
  d->p = p;
  if (!isfloat && !dropped && (neg ? m <= (uint64_t)1 << 63 : m <= (uint64_t)INT64_MAX)) {
    lua_pushinteger(L, neg ? (lua_Integer)(0u - m) : (lua_Integer)m);
  } else if (!dropped && m <= (uint64_t)MB_JSON_2P53 && e10 >= -22 && e10 <= 22) {
    double r = (double)m;
    r = e10 < 0 ? r / mb_json_pow10[-e10] : r * mb_json_pow10[e10];
    lua_pushnumber(L, neg ? -r : r);
  } else {
    char buf[MB_JSON_MAXNUM + 1], *dot;
    double r;
    memcpy(buf, s, (size_t)(p - s));
    buf[p - s] = '\0';
    if ((dot = strchr(buf, '.')) != NULL) *dot = localeconv()->decimal_point[0];
    r = strtod(buf, NULL);
    if (isinf(r)) mb_json_dec_fail(d, s, "a number too large for a float");
    lua_pushnumber(L, r);
  }
}

static void mb_json_dec_value(mb_json_dec *d);

/* Enter a container: bounded depth, and stack room for what it holds on
** the stack before its table is made. */
static void mb_json_dec_enter(mb_json_dec *d, int slots) {
  if (++d->depth > MB_JSON_MAXDEPTH)
    mb_json_dec_fail(d, d->p, "nesting deeper than %d levels", MB_JSON_MAXDEPTH);
  if (!mb_limit_checkstack(d->L, slots)) mb_json_dec_fail(d, d->p, "a stack overflow");
}

/* Make the array's table at slot t (a placeholder) with room for n
** items, the first n of which lie on the stack above it: they go in. */
static void mb_json_dec_mkarray(mb_json_dec *d, int t, int n, int room) {
  lua_State *L = d->L;
  lua_createtable(L, room, 0);
  lua_pushvalue(L, MB_JSON_ARRAY);
  lua_setmetatable(L, -2);
  lua_replace(L, t);
  for (; n > 0; n--) lua_rawseti(L, t, n);
}

/* An array (d->p at '['): its first items wait on the stack, so a short
** array's table is made at its exact size; a long one then grows. */
static void mb_json_dec_array(mb_json_dec *d) {
  lua_State *L = d->L;
  lua_Integer n = 0;
  int t, made = 0;
  mb_json_dec_enter(d, MB_JSON_ARRAYRUN + 4);
  lua_pushnil(L);
  t = lua_gettop(L);
  d->p = mb_json_ws(d->p + 1);
  if (*d->p == ']') {
    d->p++;
    mb_json_dec_mkarray(d, t, 0, 0);
    d->depth--;
    return;
  }
  for (;;) {
    mb_json_dec_value(d);
    n++;
    if (made) {
      lua_rawseti(L, t, n);
    } else if (n == MB_JSON_ARRAYRUN) {
      mb_json_dec_mkarray(d, t, (int)n, 4 * MB_JSON_ARRAYRUN);
      made = 1;
    }
    d->p = mb_json_ws(d->p);
    if (*d->p == ',') {
      d->p++;
    } else if (*d->p == ']') {
      d->p++;
      break;
    } else {
      mb_json_dec_expected(d, "',' or ']'");
    }
  }
  if (!made) mb_json_dec_mkarray(d, t, (int)n, (int)n);
  d->depth--;
}

/* An object (d->p at '{'): as an array, its first members wait on the
** stack; they go in in order, so of duplicate keys the last wins. */
static void mb_json_dec_object(mb_json_dec *d) {
  lua_State *L = d->L;
  int t, n = 0, made = 0, i;
  mb_json_dec_enter(d, 2 * MB_JSON_OBJECTRUN + 4);
  lua_pushnil(L);
  t = lua_gettop(L);
  d->p = mb_json_ws(d->p + 1);
  if (*d->p == '}') {
    d->p++;
    lua_createtable(L, 0, 0);
    lua_replace(L, t);
    d->depth--;
    return;
  }
  for (;;) {
    d->p = mb_json_ws(d->p);
    if (*d->p != '"') mb_json_dec_expected(d, "a string (an object's key)");
    mb_json_dec_string(d);
    d->p = mb_json_ws(d->p);
    if (*d->p != ':') mb_json_dec_expected(d, "':'");
    d->p++;
    mb_json_dec_value(d);
    if (++n == MB_JSON_OBJECTRUN) {
      made = 1;
      break;
    }
    d->p = mb_json_ws(d->p);
    if (*d->p == ',') {
      d->p++;
    } else if (*d->p == '}') {
      d->p++;
      break;
    } else {
      mb_json_dec_expected(d, "',' or '}'");
    }
  }
  lua_createtable(L, 0, made ? 2 * n : n);
  lua_replace(L, t);
  for (i = 0; i < n; i++) {
    lua_pushvalue(L, t + 1 + 2 * i);
    lua_pushvalue(L, t + 2 + 2 * i);
    lua_rawset(L, t);
  }
  lua_settop(L, t);
  if (made) { /* the rest go in as they come */
    for (;;) {
      d->p = mb_json_ws(d->p);
      if (*d->p == ',') {
        d->p = mb_json_ws(d->p + 1);
      } else if (*d->p == '}') {
        d->p++;
        break;
      } else {
        mb_json_dec_expected(d, "',' or '}'");
      }
      if (*d->p != '"') mb_json_dec_expected(d, "a string (an object's key)");
      mb_json_dec_string(d);
      d->p = mb_json_ws(d->p);
      if (*d->p != ':') mb_json_dec_expected(d, "':'");
      d->p++;
      mb_json_dec_value(d);
      lua_rawset(L, t);
    }
  }
  d->depth--;
}

/* A literal: true, false or null. */
static void mb_json_dec_literal(mb_json_dec *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) mb_json_dec_fail(d, d->p, "expected '%s'", word);
  d->p += n;
}

/* Any value, pushed. */
static void mb_json_dec_value(mb_json_dec *d) {
  lua_State *L = d->L;
  d->p = mb_json_ws(d->p);
  if ((size_t)(d->p - d->start) >= d->check) mb_json_dec_tick(d);
  switch (*d->p) {
  case '{':
    mb_json_dec_object(d);
    break;
  case '[':
    mb_json_dec_array(d);
    break;
  case '"':
    mb_json_dec_string(d);
    break;
  case 't':
    mb_json_dec_literal(d, "true", 4);
    lua_pushboolean(L, 1);
    break;
  case 'f':
    mb_json_dec_literal(d, "false", 5);
    lua_pushboolean(L, 0);
    break;
  case 'n':
    mb_json_dec_literal(d, "null", 4);
    lua_pushvalue(L, MB_JSON_NULL);
    break;
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    mb_json_dec_number(d);
    break;
  default:
    mb_json_dec_expected(d, "a value");
  }
}

/* json.decode(s) -> value */
static int mb_json_decode(lua_State *L) {
  mb_json_dec d;
  size_t n;
  if (lua_type(L, 1) != LUA_TSTRING)
    mb_errors_throw(L, "runtime", "json.decode", "json.decode: expected a string, got %s",
                   luaL_typename(L, 1));
  d.L = L;
  d.start = d.p = lua_tolstring(L, 1, &n);
  d.end = d.start + n;
  d.depth = 0;
  d.charged = 0;
  lua_settop(L, 1);
  lua_pushnil(L); /* slot 2: the scratch buffer's anchor */
  mb_json_buf_init(&d.scratch, 2);
  d.check = mb_limit_charge(L, 0) ? MB_JSON_GRAIN : (size_t)-1;
  mb_json_dec_value(&d);
  d.p = mb_json_ws(d.p);
  if (d.p != d.end) mb_json_dec_expected(&d, "the end of the text");
  if (d.check != (size_t)-1) mb_json_dec_tick(&d);
  return 1;
}

/* ---------------------------------------------------------------------
** json.array, json.null and the module.
** ------------------------------------------------------------------- */

/* json.array([t]) -> t: mark t (or a new table) as an array. The mark is
** a metatable of our own, protected (getmetatable gives "json.array"), so
** no script can reach it and change every array's behaviour. */
static int mb_json_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else if (!lua_istable(L, 1)) {
    return mb_errors_throw(L, "runtime", "json.array", "json.array: expected a table, got %s",
                          luaL_typename(L, 1));
  }
  lua_settop(L, 1);
  if (lua_getmetatable(L, 1)) {
    if (!lua_rawequal(L, -1, MB_JSON_ARRAY))
      return mb_errors_throw(L, "runtime", "json.array", "json.array: the table already has a metatable");
    lua_pop(L, 1);
    return 1;
  }
  lua_pushvalue(L, MB_JSON_ARRAY);
  lua_setmetatable(L, 1);
  return 1;
}

/* tostring(json.null), which a script prints when debugging. */
static int mb_json_null_tostring(lua_State *L) {
  lua_pushliteral(L, "json.null");
  return 1;
}

int mb_json_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"encode", mb_json_encode}, {"decode", mb_json_decode}, {"array", mb_json_array}, {NULL, NULL}};
  luaL_newlibtable(L, funcs);
  /* json.null: a userdata of its own, its metatable out of reach. */
  lua_newuserdatauv(L, 0, 0);
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, mb_json_null_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "json.null");
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "json.null");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "null");
  /* The arrays' metatable. */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "json.array");
  lua_setfield(L, -2, "__metatable");
  luaL_setfuncs(L, funcs, 2);
  return 1;
}

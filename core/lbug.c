/*
** lbug.c — Lua 5.4.4's bug "'break' may not properly exit a loop with a
** to-be-closed variable" (lua.org's list; fixed in 5.4.5's lparser.c),
** fixed in the compiled code: we may not patch Lua, so we patch what it
** compiles.
**
** Layer 0 (base). The bug: leaving a generic for's block, 5.4.4's parser
** makes the "break" label (and the CLOSE a break out of a captured
** variable's scope needs) while the loop's own variables are still active,
** so that CLOSE starts at the first declared variable (A+4 of the loop's
** TFORPREP A) instead of the loop's level (A). The loop's closing value
** (A+3) stays on the thread's list of to-be-closed variables after its
** registers are freed: it is never closed, and the next to-be-closed
** variable made at or below that register walks a negative distance in
** luaF_newtbcupval: a segfault (stock lua5.4 too). The loop, in
** `luac5.4 -l`:
**
**   p      TFORPREP  A  Bx      ; to q
**          ...  JMP  sJ        ; the break: to q+2
**   q      TFORCALL  A  0 C
**   q+1    TFORLOOP  A  Bx      ; to p+1
**   q+2    CLOSE     A+4        ; 5.4.5 makes this CLOSE A
**
** The fix: lua_dump the function (with debug info), walk the binary chunk
** (ldump.c's format: a header, then per function its source, lines,
** sizes, code, constants, upvalues, nested functions and debug info;
** sizes as 7-bit groups, most significant first, 0x80 marking the last
** byte), rewrite each such CLOSE to A, as 5.4.5 compiles it, and load the
** patched chunk in the function's place with the same upvalue values.
** Closing from A is safe: A..A+2 are the loop's hidden state, never
** captured, never to be closed. Only that CLOSE changes: the code keeps
** its length, so jumps, line information and locals stay as they are.
**
** The stock load, loadfile, dofile and Lua file searcher are replaced by
** versions that fix what they load (binary chunks included: luac5.4's
** output has the bug too); the sandbox's loaders (sandbox.c), runs and
** Scripts (run.c) and moonbridge's own Lua modules (env.c) call
** mb_lbug_fix. Most chunks have no "break" or no generic for: they cost a
** search of their text, or a dump and a walk of it.
*/
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lbug.h"
#include "mb.h"

/* Lua 5.4.4's opcodes (lopcodes.h's order) and instruction fields: the
** opcode in the low 7 bits, then A (8 bits); Bx (17 bits) and sJ (25
** bits, excess OFFSET_sJ) follow them. */
enum { MB_LBUG_OP_CLOSE = 54, MB_LBUG_OP_JMP = 56, MB_LBUG_OP_TFORPREP = 75,
       MB_LBUG_OP_TFORCALL = 76, MB_LBUG_OP_TFORLOOP = 77 };
#define MB_LBUG_OP(i) ((int)((i) & 0x7fu))
#define MB_LBUG_A(i) ((int)(((i) >> 7) & 0xffu))
#define MB_LBUG_BX(i) ((long)((i) >> 15))
#define MB_LBUG_SJ(i) ((long)(((i) >> 7) & 0x1ffffffu) - 0xffffffL)
#define MB_LBUG_SETA(i, a) (((i) & ~((uint32_t)0xff << 7)) | ((uint32_t)(a) << 7))

/* Constant tags in a binary chunk (lobject.h's variants). */
enum { MB_LBUG_K_NIL = 0x00, MB_LBUG_K_FALSE = 0x01, MB_LBUG_K_TRUE = 0x11,
       MB_LBUG_K_INT = 0x03, MB_LBUG_K_FLT = 0x13, MB_LBUG_K_SHRSTR = 0x04,
       MB_LBUG_K_LNGSTR = 0x14 };

/* Nested functions deeper than this are refused: Lua's parser stops at
** LUAI_MAXCCALLS (200) C levels, so a chunk it compiled never gets here. */
#define MB_LBUG_MAXDEPTH 256

/* ---------------------------------------------------------------------
** Walking a binary chunk.
** ------------------------------------------------------------------- */

typedef struct {
  unsigned char *p;
  size_t len, pos;
  int bad;     /* the chunk is not one we understand: stop */
  int patched; /* CLOSEs rewritten */
} mb_lbug_chunk;

/* Skip n bytes, if there are that many. */
static void mb_lbug_skip(mb_lbug_chunk *c, size_t n) {
  if (c->bad || n > c->len - c->pos)
    c->bad = 1;
  else
    c->pos += n;
}

static int mb_lbug_byte(mb_lbug_chunk *c) {
  if (c->bad || c->pos >= c->len) {
    c->bad = 1;
    return 0;
  }
  return c->p[c->pos++];
}

/* A size (dumpSize): 7-bit groups, most significant first, the last one
** marked with 0x80. Sizes past what an int holds are refused, as the
** undumper does. */
static size_t mb_lbug_size(mb_lbug_chunk *c) {
  size_t x = 0;
  int b;
  do {
    b = mb_lbug_byte(c);
    if (x > ((size_t)0x7fffffff >> 7)) c->bad = 1;
    if (c->bad) return 0;
    x = (x << 7) | (size_t)(b & 0x7f);
  } while ((b & 0x80) == 0);
  return x;
}

/* A string (dumpString): its size plus one, then its bytes; 0 for none. */
static void mb_lbug_string(mb_lbug_chunk *c) {
  size_t n = mb_lbug_size(c);
  if (n > 0) mb_lbug_skip(c, n - 1);
}

/* Skip n items of each bytes, n read from the chunk. */
static void mb_lbug_vector(mb_lbug_chunk *c, size_t each) {
  size_t n = mb_lbug_size(c);
  if (each != 0 && n > (c->len - c->pos) / each)
    c->bad = 1;
  else
    mb_lbug_skip(c, n * each);
}

static uint32_t mb_lbug_get(const unsigned char *code, long pc) {
  uint32_t i;
  memcpy(&i, code + (size_t)pc * sizeof i, sizeof i); /* the chunk is not aligned */
  return i;
}

/* Whether a JMP in pc [from, to) lands on target: a break of the loop. */
static int mb_lbug_jumps_to(const unsigned char *code, long from, long to, long target) {
  for (long pc = from; pc < to; pc++) {
    uint32_t i = mb_lbug_get(code, pc);
    if (MB_LBUG_OP(i) == MB_LBUG_OP_JMP && pc + 1 + MB_LBUG_SJ(i) == target) return 1;
  }
  return 0;
}

/* Rewrite the bad CLOSE of every generic for in n instructions: the one
** right after the loop's TFORLOOP, above the closing value's register
** (A+3), on which a JMP of the loop lands. Nothing else is touched. */
static void mb_lbug_code(mb_lbug_chunk *c, unsigned char *code, long n) {
  for (long pc = 0; pc < n; pc++) {
    uint32_t i = mb_lbug_get(code, pc), close;
    long call;
    int a;
    if (MB_LBUG_OP(i) != MB_LBUG_OP_TFORPREP) continue;
    a = MB_LBUG_A(i);
    call = pc + 1 + MB_LBUG_BX(i);
    if (call + 2 >= n) continue;
    close = mb_lbug_get(code, call + 2);
    if (MB_LBUG_OP(mb_lbug_get(code, call)) != MB_LBUG_OP_TFORCALL ||
        MB_LBUG_OP(mb_lbug_get(code, call + 1)) != MB_LBUG_OP_TFORLOOP ||
        MB_LBUG_OP(close) != MB_LBUG_OP_CLOSE || MB_LBUG_A(close) <= a + 3 ||
        !mb_lbug_jumps_to(code, pc + 1, call, call + 2))
      continue;
    close = MB_LBUG_SETA(close, a);
    memcpy(code + (size_t)(call + 2) * sizeof close, &close, sizeof close);
    c->patched++;
  }
}

static void mb_lbug_constants(mb_lbug_chunk *c) {
  size_t n = mb_lbug_size(c);
  for (size_t k = 0; k < n && !c->bad; k++) {
    switch (mb_lbug_byte(c)) {
    case MB_LBUG_K_NIL:
    case MB_LBUG_K_FALSE:
    case MB_LBUG_K_TRUE: break;
    case MB_LBUG_K_INT: mb_lbug_skip(c, sizeof(lua_Integer)); break;
    case MB_LBUG_K_FLT: mb_lbug_skip(c, sizeof(lua_Number)); break;
    case MB_LBUG_K_SHRSTR:
    case MB_LBUG_K_LNGSTR: mb_lbug_string(c); break;
    default: c->bad = 1;
    }
  }
}

/* Debug information: line deltas, absolute lines, locals, upvalue names. */
static void mb_lbug_debug(mb_lbug_chunk *c) {
  size_t n;
  mb_lbug_vector(c, 1);
  n = mb_lbug_size(c);
  for (size_t k = 0; k < n && !c->bad; k++) {
    mb_lbug_size(c); /* pc */
    mb_lbug_size(c); /* line */
  }
  n = mb_lbug_size(c);
  for (size_t k = 0; k < n && !c->bad; k++) {
    mb_lbug_string(c);
    mb_lbug_size(c); /* startpc */
    mb_lbug_size(c); /* endpc */
  }
  n = mb_lbug_size(c);
  for (size_t k = 0; k < n && !c->bad; k++) mb_lbug_string(c);
}

/* One function (dumpFunction), its nested ones included. */
static void mb_lbug_function(mb_lbug_chunk *c, int depth) {
  size_t n;
  if (depth > MB_LBUG_MAXDEPTH) c->bad = 1;
  mb_lbug_string(c);               /* source */
  mb_lbug_size(c);                 /* linedefined */
  mb_lbug_size(c);                 /* lastlinedefined */
  mb_lbug_skip(c, 3);              /* numparams, is_vararg, maxstacksize */
  n = mb_lbug_size(c);             /* code */
  if (c->bad || n > (c->len - c->pos) / sizeof(uint32_t)) {
    c->bad = 1;
    return;
  }
  mb_lbug_code(c, c->p + c->pos, (long)n);
  c->pos += n * sizeof(uint32_t);
  mb_lbug_constants(c);
  mb_lbug_vector(c, 3); /* upvalues: instack, idx, kind */
  n = mb_lbug_size(c);  /* nested functions */
  for (size_t k = 0; k < n && !c->bad; k++) mb_lbug_function(c, depth + 1);
  mb_lbug_debug(c);
}

/* The header this Lua writes (ldump.c's dumpHeader), checked byte for
** byte against one made here: the same version, format and sizes. */
static size_t mb_lbug_header(unsigned char *h) {
  static const char data[] = "\x19\x93\r\n\x1a\n";
  lua_Integer i = 0x5678;
  lua_Number f = 370.5;
  size_t n = 0;
  memcpy(h, LUA_SIGNATURE, sizeof LUA_SIGNATURE - 1);
  n += sizeof LUA_SIGNATURE - 1;
  h[n++] = 0x54; /* 5.4 */
  h[n++] = 0;    /* the official format */
  memcpy(h + n, data, sizeof data - 1);
  n += sizeof data - 1;
  h[n++] = (unsigned char)sizeof(uint32_t); /* Instruction */
  h[n++] = (unsigned char)sizeof(lua_Integer);
  h[n++] = (unsigned char)sizeof(lua_Number);
  memcpy(h + n, &i, sizeof i);
  n += sizeof i;
  memcpy(h + n, &f, sizeof f);
  return n + sizeof f;
}

int mb_lbug_patch(unsigned char *chunk, size_t len) {
  unsigned char h[64];
  size_t hn = mb_lbug_header(h);
  mb_lbug_chunk c = {chunk, len, 0, 0, 0};
  if (len < hn + 1 || memcmp(chunk, h, hn) != 0) return -1;
  c.pos = hn + 1; /* the main function's number of upvalues */
  mb_lbug_function(&c, 0);
  if (c.bad || c.pos != len) return -1;
  return c.patched;
}

/* ---------------------------------------------------------------------
** Fixing a function.
** ------------------------------------------------------------------- */

/* lua_dump's output, in memory from Lua's allocator (so a memory limit
** covers it): the writer says when it does not fit. */
typedef struct {
  lua_Alloc alloc;
  void *ud;
  unsigned char *p;
  size_t len, cap;
} mb_lbug_buf;

static int mb_lbug_writer(lua_State *L, const void *p, size_t n, void *ud) {
  mb_lbug_buf *b = (mb_lbug_buf *)ud;
  (void)L;
  if (n > b->cap - b->len) {
    size_t cap = b->cap < 256 ? 256 : b->cap;
    unsigned char *q;
    while (cap - b->len < n) {
      if (cap > ((size_t)-1) / 2) return 1;
      cap *= 2;
    }
    q = (unsigned char *)b->alloc(b->ud, b->p, b->cap, cap);
    if (q == NULL) return 1;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

/* lua_load's reader over the patched chunk: all of it at once. */
static const char *mb_lbug_reader(lua_State *L, void *ud, size_t *size) {
  mb_lbug_buf *b = (mb_lbug_buf *)ud;
  (void)L;
  *size = b->len;
  b->len = 0;
  return *size > 0 ? (const char *)b->p : NULL;
}

/* Put a memory error at idx: Lua's own message, which is never collected,
** so pushing it allocates nothing; lua_error raises it as LUA_ERRMEM. */
static int mb_lbug_nomem(lua_State *L, int idx) {
  lua_pushliteral(L, "not enough memory");
  lua_replace(L, idx);
  return LUA_ERRMEM;
}

int mb_lbug_fix(lua_State *L, int idx) {
  mb_lbug_buf b;
  int st, n;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TFUNCTION || lua_iscfunction(L, idx)) return LUA_OK;
  memset(&b, 0, sizeof b);
  b.alloc = lua_getallocf(L, &b.ud);
  lua_pushvalue(L, idx);
  if (lua_dump(L, mb_lbug_writer, &b, 0) != 0) { /* only the writer fails */
    lua_pop(L, 1);
    if (b.p != NULL) b.alloc(b.ud, b.p, b.cap, 0);
    return mb_lbug_nomem(L, idx);
  }
  lua_pop(L, 1);
  n = mb_lbug_patch(b.p, b.len);
  mb_assert(n >= 0, "lua_dump wrote a chunk lbug.c cannot walk");
  st = n > 0 ? lua_load(L, mb_lbug_reader, &b, "=(lbug)", "b") : LUA_OK;
  if (b.p != NULL) b.alloc(b.ud, b.p, b.cap, 0);
  if (n <= 0) return LUA_OK;
  if (st != LUA_OK) { /* memory: the message is Lua's */
    lua_replace(L, idx);
    return st;
  }
  for (int i = 1; lua_getupvalue(L, idx, i) != NULL; i++) /* _ENV, for a main chunk */
    if (lua_setupvalue(L, -2, i) == NULL) lua_pop(L, 1);
  lua_replace(L, idx);
  return LUA_OK;
}

int mb_lbug_fix_text(lua_State *L, int idx, const char *src, size_t len) {
  if (len == 0 || (src[0] != LUA_SIGNATURE[0] && memmem(src, len, "break", 5) == NULL))
    return LUA_OK; /* text without the keyword: no break, no bug */
  return mb_lbug_fix(L, idx);
}

/* ---------------------------------------------------------------------
** The stock loaders, fixing what they load. load, loadfile and dofile
** are written again with the public API rather than called: a C function
** between the script and the stock one would change the name in its
** argument errors ("bad argument #1 to '?'") and drop the position from a
** reader's error. They check and load as lbaselib.c's do, in the same
** order, with the same messages.
** ------------------------------------------------------------------- */

/* load's last step: the env argument as the chunk's first upvalue, or
** fail and the message. */
static int mb_lbug_loaded(lua_State *L, int status, int env) {
  if (status == LUA_OK) status = mb_lbug_fix(L, -1);
  if (status != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env != 0) {
    lua_pushvalue(L, env);
    if (lua_setupvalue(L, -2, 1) == NULL) lua_pop(L, 1);
  }
  return 1;
}

#define MB_LBUG_PIECE 5 /* the stack slot that keeps the reader's last piece */

/* load's reader over a function: each call a piece; nil or "" ends. */
static const char *mb_lbug_read_fn(lua_State *L, void *ud, size_t *size) {
  (void)ud;
  luaL_checkstack(L, 2, "too many nested functions");
  lua_pushvalue(L, 1);
  lua_call(L, 0, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    *size = 0;
    return NULL;
  }
  if (!lua_isstring(L, -1)) luaL_error(L, "reader function must return a string");
  lua_replace(L, MB_LBUG_PIECE);
  return lua_tolstring(L, MB_LBUG_PIECE, size);
}

/* load(chunk [, chunkname [, mode [, env]]]) */
static int mb_lbug_load(lua_State *L) {
  size_t len;
  const char *s = lua_tolstring(L, 1, &len);
  const char *mode = luaL_optstring(L, 3, "bt");
  int env = !lua_isnone(L, 4) ? 4 : 0;
  int st;
  if (s != NULL) {
    st = luaL_loadbufferx(L, s, len, luaL_optstring(L, 2, s), mode);
    if (st == LUA_OK) st = mb_lbug_fix_text(L, -1, s, len);
    return mb_lbug_loaded(L, st, env);
  }
  s = luaL_optstring(L, 2, "=(load)");
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, MB_LBUG_PIECE);
  st = lua_load(L, mb_lbug_read_fn, NULL, s, mode);
  return mb_lbug_loaded(L, st, env);
}

/* loadfile([filename [, mode [, env]]]) */
static int mb_lbug_loadfile(lua_State *L) {
  const char *file = luaL_optstring(L, 1, NULL);
  const char *mode = luaL_optstring(L, 2, NULL);
  int env = !lua_isnone(L, 3) ? 3 : 0;
  return mb_lbug_loaded(L, luaL_loadfilex(L, file, mode), env);
}

static int mb_lbug_dofile_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L) - 1;
}

/* dofile([filename]) */
static int mb_lbug_dofile(lua_State *L) {
  const char *file = luaL_optstring(L, 1, NULL);
  lua_settop(L, 1);
  if (luaL_loadfile(L, file) != LUA_OK || mb_lbug_fix(L, -1) != LUA_OK) return lua_error(L);
  lua_callk(L, 0, LUA_MULTRET, 0, mb_lbug_dofile_k);
  return mb_lbug_dofile_k(L, LUA_OK, 0);
}

/* package.searchers[2], the Lua file searcher, called as it is (upvalue
** 1): its errors are raised by require's frame either way. What it found
** is fixed; a fix that does not fit in memory is raised as the searcher
** raises a load error. */
static int mb_lbug_searcher(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  if (lua_type(L, 1) == LUA_TFUNCTION && mb_lbug_fix(L, 1) != LUA_OK) {
    lua_pushvalue(L, 1);
    return lua_error(L);
  }
  return lua_gettop(L);
}

void mb_lbug_open(lua_State *L) {
  static const luaL_Reg base[] = {
      {"load", mb_lbug_load}, {"loadfile", mb_lbug_loadfile}, {"dofile", mb_lbug_dofile},
      {NULL, NULL}};
  int top = lua_gettop(L);
  lua_pushglobaltable(L);
  luaL_setfuncs(L, base, 0);
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_LOADLIBNAME) == LUA_TTABLE &&
      lua_getfield(L, -1, "searchers") == LUA_TTABLE) {
    if (lua_rawgeti(L, -1, 2) == LUA_TFUNCTION) {
      lua_pushcclosure(L, mb_lbug_searcher, 1);
      lua_rawseti(L, -2, 2);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
}

/*
** strlib.c — string.find, match, gmatch, gsub, rep (and the linear sub,
** byte, upper, lower, reverse, utf8.len, utf8.codepoint, utf8.offset) that
** honour the run's deadline and instruction limit; and utf8.codes as Lua
** 5.4.6 has it (5.4.4's accepts stray continuation bytes).
**
** Layer: C core. Lua's count hook fires only between VM instructions, so
** one call of a stock string function can hold the loop for as long as its
** input makes it work: a pattern that backtracks ("(.-)(.-)(.-)b" on a long
** subject), a plain find of a long needle, string.rep of a gigabyte. These
** replacements do what Lua 5.4's do (results, errors and their messages, as
** the reference manual's §6.4.1 defines patterns; compared against lua5.4
** by testdata/stock and the fuzz target in core) and charge their work to
** the run with mb_limit_charge as they go, so the run's limit error stops
** them as the hook stops Lua code.
**
** A pattern is matched by backtracking, recursing for captures and
** repetitions exactly where the nesting limit ("pattern too complex", 200
** levels) must count them, and looping for the rest.
*/
#include <ctype.h>
#include <limits.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "limit.h"
#include "strlib.h"

/* Work is charged in batches of this many steps. A step is about one VM
** instruction's worth: one pattern item tried, or MB_STR_BYTES bytes scanned
** or copied. */
#define MB_STR_BATCH 1024
#define MB_STR_BYTES 16

/* Functions that produce long strings charge at least every this many
** bytes. */
#define MB_REP_STEP ((size_t)1 << 20)

/* Lua's limits on patterns: captures, and nested match calls. */
#define MB_STRLIB_PAT_MAXCAP 32
#define MB_STRLIB_PAT_MAXDEPTH 200

/* A capture's length while it is open, or for a position capture "()". */
#define MB_CAP_OPEN (-1)
#define MB_CAP_POSITION (-2)

/* The largest string string.rep makes, as stock Lua: an int's worth. */
#define MB_STR_MAXSIZE ((size_t)INT_MAX)

/* Charge n bytes of copying or scanning; less than MB_STR_FREE bytes is
** free, as one VM instruction's worth. */
#define MB_STR_FREE 1024
static void mb_strlib_charge_bytes(lua_State *L, size_t n) {
  if (n >= MB_STR_FREE) mb_limit_charge(L, (int64_t)(n / MB_STR_BYTES));
}

/* Lua's relative string position: negative counts from the end, and
** anything before the start is 1. */
static size_t mb_strlib_posrelat(lua_Integer pos, size_t len) {
  if (pos > 0) return (size_t)pos;
  if (pos == 0 || pos < -(lua_Integer)len) return 1;
  return len + (size_t)pos + 1;
}

/* ---------------------------------------------------------------------
** The matcher.
** ------------------------------------------------------------------- */
typedef struct mb_pat {
  lua_State *L;
  const char *src, *src_end; /* the subject; *src_end is its '\0' */
  const char *pat_end;       /* the pattern's end; *pat_end is '\0' */
  int depth;                 /* nested match calls left */
  int ncap;                  /* captures opened so far */
  int64_t fuel;              /* steps left before the next charge */
  struct {
    const char *at;
    ptrdiff_t len; /* or MB_CAP_OPEN, MB_CAP_POSITION */
  } cap[MB_STRLIB_PAT_MAXCAP];
} mb_pat;

static void mb_strlib_pat_init(mb_pat *m, lua_State *L, const char *s, size_t ls,
                        const char *p, size_t lp) {
  m->L = L;
  m->src = s;
  m->src_end = s + ls;
  m->pat_end = p + lp;
  m->fuel = MB_STR_BATCH;
}

/* Before each attempt at a new subject position. */
static void mb_strlib_pat_reset(mb_pat *m) {
  m->depth = MB_STRLIB_PAT_MAXDEPTH;
  m->ncap = 0;
}

/* Charge what the fuel says was used, and fill it up again. */
static void mb_strlib_pat_refuel(mb_pat *m) {
  int64_t used = MB_STR_BATCH - m->fuel;
  m->fuel = MB_STR_BATCH;
  mb_limit_charge(m->L, used);
}

/* Count n steps, charging once a batch is used up. Called on every item
** tried: a decrement and a branch. */
static inline void mb_strlib_pat_step(mb_pat *m, int64_t n) {
  if ((m->fuel -= n) <= 0) mb_strlib_pat_refuel(m);
}

/* Charge what is left when a call ends: the budget, not the clock (a call
** that used little costs one branch; the hook looks at the clock soon
** enough). */
static void mb_strlib_pat_settle(mb_pat *m) {
  if (MB_STR_BATCH - m->fuel >= 64) {
    mb_limit_charge(m->L, MB_STR_BATCH - m->fuel);
    m->fuel = MB_STR_BATCH;
  }
}

/* Does c belong to the class named by letter cl (%a, %d, ... and their
** complements in upper case)? Any other character stands for itself. */
static inline int mb_strlib_pat_class(int c, int cl) {
  int yes;
  switch (tolower(cl)) {
    case 'a': yes = isalpha(c); break;
    case 'c': yes = iscntrl(c); break;
    case 'd': yes = isdigit(c); break;
    case 'g': yes = isgraph(c); break;
    case 'l': yes = islower(c); break;
    case 'p': yes = ispunct(c); break;
    case 's': yes = isspace(c); break;
    case 'u': yes = isupper(c); break;
    case 'w': yes = isalnum(c); break;
    case 'x': yes = isxdigit(c); break;
    case 'z': yes = c == 0; break; /* deprecated, but still in 5.4 */
    default: return cl == c;
  }
  return isupper(cl) ? !yes : yes;
}

/* Does c belong to the set that starts at p ('[') and ends at last (its
** ']')? Classes, ranges a-z and single characters; '^' complements. */
static inline int mb_strlib_pat_set(int c, const char *p, const char *last) {
  int in = 1;
  if (*++p == '^') {
    in = 0;
    p++;
  }
  for (; p < last; p++) {
    if (*p == '%') {
      if (mb_strlib_pat_class(c, (unsigned char)*++p)) return in;
    } else if (p[1] == '-' && p + 2 < last) {
      if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) return in;
      p += 2;
    } else if ((unsigned char)*p == c) {
      return in;
    }
  }
  return !in;
}

/* Where the single-character class at p ends (its quantifier, if any, is
** there): "%x", a set "[...]" or one character. A set's first character is
** itself even when it is ']', and "%]" inside it does not end it. */
static const char *mb_strlib_pat_class_end(mb_pat *m, const char *p) {
  if (*p == '%') {
    if (p + 1 >= m->pat_end) luaL_error(m->L, "malformed pattern (ends with '%%')");
    return p + 2;
  }
  if (*p != '[') return p + 1;
  if (*++p == '^') p++;
  do {
    if (p >= m->pat_end) luaL_error(m->L, "malformed pattern (missing ']')");
    if (*p++ == '%' && p < m->pat_end) p++;
  } while (*p != ']');
  return p + 1;
}

/* Does the character at s match the class from p to ep? Never past the
** subject's end. */
static inline int mb_strlib_pat_single(mb_pat *m, const char *s, const char *p, const char *ep) {
  int c;
  if (s >= m->src_end) return 0;
  c = (unsigned char)*s;
  switch (*p) {
    case '.': return 1;
    case '%': return mb_strlib_pat_class(c, (unsigned char)p[1]);
    case '[': return mb_strlib_pat_set(c, p, ep - 1);
    default: return (unsigned char)*p == c;
  }
}

static const char *mb_strlib_pat_match(mb_pat *m, const char *s, const char *p);

/* x* and x+ (from its second character): take as many as match, then give
** them back one by one until the rest of the pattern matches. The scan is
** charged when it ends: one pass over the subject at most. */
static const char *mb_strlib_pat_greedy(mb_pat *m, const char *s, const char *p, const char *ep) {
  ptrdiff_t n = 0;
  while (mb_strlib_pat_single(m, s + n, p, ep)) n++;
  if (n >= MB_STR_FREE) mb_strlib_pat_step(m, n / MB_STR_BYTES);
  for (; n >= 0; n--) {
    const char *e = mb_strlib_pat_match(m, s + n, ep + 1);
    if (e != NULL) return e;
  }
  return NULL;
}

/* x-: as few as let the rest of the pattern match. */
static const char *mb_strlib_pat_lazy(mb_pat *m, const char *s, const char *p, const char *ep) {
  for (;;) {
    const char *e = mb_strlib_pat_match(m, s, ep + 1);
    if (e != NULL) return e;
    if (!mb_strlib_pat_single(m, s, p, ep)) return NULL;
    s++;
  }
}

/* "(" or "()": open a capture at s and match the rest; undone on failure. */
static const char *mb_strlib_pat_open(mb_pat *m, const char *s, const char *p, ptrdiff_t what) {
  const char *e;
  if (m->ncap >= MB_STRLIB_PAT_MAXCAP) luaL_error(m->L, "too many captures");
  m->cap[m->ncap].at = s;
  m->cap[m->ncap].len = what;
  m->ncap++;
  e = mb_strlib_pat_match(m, s, p);
  if (e == NULL) m->ncap--;
  return e;
}

/* ")": close the innermost open capture at s and match the rest. */
static const char *mb_strlib_pat_close(mb_pat *m, const char *s, const char *p) {
  const char *e;
  int i = m->ncap;
  do {
    if (--i < 0) luaL_error(m->L, "invalid pattern capture");
  } while (m->cap[i].len != MB_CAP_OPEN);
  m->cap[i].len = s - m->cap[i].at;
  e = mb_strlib_pat_match(m, s, p);
  if (e == NULL) m->cap[i].len = MB_CAP_OPEN;
  return e;
}

/* %bxy at s (p at x): a run from x to its balancing y. The scan is
** charged when it ends: one pass over the subject at most. */
static const char *mb_strlib_pat_balance(mb_pat *m, const char *s, const char *p) {
  const char *start = s, *e = NULL;
  int depth = 1;
  char open, close;
  if (p + 1 >= m->pat_end) luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
  if (s >= m->src_end || *s != *p) return NULL;
  open = p[0];
  close = p[1];
  while (++s < m->src_end) {
    if (*s == close) {
      if (--depth == 0) {
        e = s + 1;
        break;
      }
    } else if (*s == open) {
      depth++;
    }
  }
  if (s - start >= MB_STR_FREE) mb_strlib_pat_step(m, (s - start) / MB_STR_BYTES);
  return e;
}

/* %1-%9 at s: the text of capture d (a digit) again. */
static const char *mb_strlib_pat_backref(mb_pat *m, const char *s, int d) {
  int i = d - '1';
  size_t len;
  if (i < 0 || i >= m->ncap || m->cap[i].len == MB_CAP_OPEN)
    luaL_error(m->L, "invalid capture index %%%d", i + 1);
  len = (size_t)m->cap[i].len; /* a position capture is huge: no match */
  if ((size_t)(m->src_end - s) < len) return NULL;
  mb_strlib_pat_step(m, (int64_t)(len / MB_STR_BYTES));
  return memcmp(m->cap[i].at, s, len) == 0 ? s + len : NULL;
}

/* %f[set] at s (p after "%f"): s is where the set starts to match. */
static const char *mb_strlib_pat_frontier(mb_pat *m, const char *s, const char *p, const char **next) {
  int before;
  if (*p != '[') luaL_error(m->L, "missing '[' after '%%f' in pattern");
  *next = mb_strlib_pat_class_end(m, p);
  before = s == m->src ? '\0' : (unsigned char)s[-1];
  if (mb_strlib_pat_set(before, p, *next - 1)) return NULL;
  return mb_strlib_pat_set((unsigned char)*s, p, *next - 1) ? s : NULL;
}

/* Match pattern p at subject position s: the end of the match, or NULL.
** Items that cannot backtrack continue the loop; captures, x?, x*, x+ and
** x- recurse, and the depth of that recursion is Lua's limit. */
static const char *mb_strlib_pat_match(mb_pat *m, const char *s, const char *p) {
  if (m->depth-- == 0) luaL_error(m->L, "pattern too complex");
  while (p != m->pat_end) {
    const char *ep;
    mb_strlib_pat_step(m, 1);
    switch (*p) {
      case '(':
        if (p[1] == ')')
          s = mb_strlib_pat_open(m, s, p + 2, MB_CAP_POSITION);
        else
          s = mb_strlib_pat_open(m, s, p + 1, MB_CAP_OPEN);
        goto done;
      case ')':
        s = mb_strlib_pat_close(m, s, p + 1);
        goto done;
      case '$':
        if (p + 1 != m->pat_end) break; /* an ordinary character */
        if (s != m->src_end) s = NULL;
        goto done;
      case '%':
        if (p[1] == 'b') {
          if ((s = mb_strlib_pat_balance(m, s, p + 2)) == NULL) goto done;
          p += 4;
          continue;
        }
        if (p[1] == 'f') {
          if ((s = mb_strlib_pat_frontier(m, s, p + 2, &ep)) == NULL) goto done;
          p = ep;
          continue;
        }
        if (p[1] >= '0' && p[1] <= '9') {
          if ((s = mb_strlib_pat_backref(m, s, (unsigned char)p[1])) == NULL) goto done;
          p += 2;
          continue;
        }
        break; /* a class such as %a */
    }
    /* A single-character class and its quantifier, if any. */
    ep = mb_strlib_pat_class_end(m, p);
    if (!mb_strlib_pat_single(m, s, p, ep)) {
      if (*ep != '*' && *ep != '?' && *ep != '-') {
        s = NULL;
        goto done;
      }
      p = ep + 1; /* zero of them will do */
      continue;
    }
    switch (*ep) {
      case '?': {
        const char *e = mb_strlib_pat_match(m, s + 1, ep + 1);
        if (e != NULL) {
          s = e;
          goto done;
        }
        p = ep + 1;
        continue;
      }
      case '+': s = mb_strlib_pat_greedy(m, s + 1, p, ep); goto done;
      case '*': s = mb_strlib_pat_greedy(m, s, p, ep); goto done;
      case '-': s = mb_strlib_pat_lazy(m, s, p, ep); goto done;
      default:
        s++;
        p = ep;
        continue;
    }
  }
done:
  m->depth++;
  return s;
}

/* Push capture i of the match [s, e); with no captures, capture 0 is the
** whole match. Returns how many values were pushed (always 1). */
static void mb_strlib_pat_push_capture(mb_pat *m, int i, const char *s, const char *e) {
  if (i >= m->ncap) {
    if (i != 0) luaL_error(m->L, "invalid capture index %%%d", i + 1);
    lua_pushlstring(m->L, s, (size_t)(e - s));
    return;
  }
  if (m->cap[i].len == MB_CAP_OPEN) luaL_error(m->L, "unfinished capture");
  if (m->cap[i].len == MB_CAP_POSITION)
    lua_pushinteger(m->L, (m->cap[i].at - m->src) + 1);
  else
    lua_pushlstring(m->L, m->cap[i].at, (size_t)m->cap[i].len);
}

/* Push every capture (or, when whole is set and there are none, the whole
** match [s, e)). Returns the count. */
static int mb_strlib_pat_push_captures(mb_pat *m, const char *s, const char *e, int whole) {
  int i, n = m->ncap == 0 && whole ? 1 : m->ncap;
  luaL_checkstack(m->L, n, "too many captures");
  for (i = 0; i < n; i++) mb_strlib_pat_push_capture(m, i, s, e);
  return n;
}

/* ---------------------------------------------------------------------
** find, match, gmatch.
** ------------------------------------------------------------------- */

/* Does p hold none of the characters that make it a pattern? */
static int mb_strlib_is_plain(const char *p, size_t lp) {
  size_t i;
  for (i = 0; i < lp; i++) {
    switch (p[i]) {
      case '^': case '$': case '*': case '+': case '?':
      case '.': case '(': case '[': case '%': case '-':
        return 0;
    }
  }
  return 1;
}

/* The first occurrence of p (1 <= lp <= ls) in s, or NULL. A short needle
** is looked for as stock does (memchr for its first byte, then memcmp: the
** fastest on ordinary text, and at worst lp times linear); a longer one
** with memmem, linear at worst (stock's search is quadratic). */
static const char *mb_strlib_scan(const char *s, size_t ls, const char *p, size_t lp) {
  const char *end = s + (ls - lp) + 1; /* past the last possible start */
  if (lp > 16) return memmem(s, ls, p, lp);
  while (s < end && (s = memchr(s, p[0], (size_t)(end - s))) != NULL) {
    if (memcmp(s + 1, p + 1, lp - 1) == 0) return s;
    s++;
  }
  return NULL;
}

/* The first occurrence of p in s, or NULL; the empty string is found at
** s. A long subject is searched in windows, charged one by one. */
static const char *mb_strlib_memfind(lua_State *L, const char *s, size_t ls,
                                  const char *p, size_t lp) {
  size_t window = lp > 65536 ? lp : 65536, off = 0;
  if (lp == 0) return s;
  while (lp <= ls - off) {
    size_t n = ls - off < window + lp - 1 ? ls - off : window + lp - 1;
    const char *at = mb_strlib_scan(s + off, n, p, lp);
    mb_strlib_charge_bytes(L, n);
    if (at != NULL) return at;
    if (n < window + lp - 1) break; /* that was the last window */
    off += window;
  }
  return NULL;
}

static int mb_strlib_find_aux(lua_State *L, int find) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = mb_strlib_posrelat(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) { /* starts past the end: nothing to find */
    luaL_pushfail(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || mb_strlib_is_plain(p, lp))) {
    const char *at = mb_strlib_memfind(L, s + init, ls - init, p, lp);
    if (at != NULL) {
      lua_pushinteger(L, (at - s) + 1);
      lua_pushinteger(L, (lua_Integer)((at - s) + lp));
      return 2;
    }
  } else {
    mb_pat m;
    const char *from = s + init;
    int anchor = *p == '^';
    if (anchor) {
      p++;
      lp--;
    }
    mb_strlib_pat_init(&m, L, s, ls, p, lp);
    do {
      const char *e;
      mb_strlib_pat_reset(&m);
      if ((e = mb_strlib_pat_match(&m, from, p)) != NULL) {
        mb_strlib_pat_settle(&m);
        if (!find) return mb_strlib_pat_push_captures(&m, from, e, 1);
        lua_pushinteger(L, (from - s) + 1);
        lua_pushinteger(L, e - s);
        return mb_strlib_pat_push_captures(&m, NULL, NULL, 0) + 2;
      }
    } while (from++ < m.src_end && !anchor);
    mb_strlib_pat_settle(&m);
  }
  luaL_pushfail(L);
  return 1;
}

static int mb_strlib_find(lua_State *L) { return mb_strlib_find_aux(L, 1); }
static int mb_strlib_match(lua_State *L) { return mb_strlib_find_aux(L, 0); }

/* gmatch's state, a userdata upvalue of its iterator beside the subject
** and the pattern (which keep the pointers valid). */
typedef struct mb_gmatch {
  mb_pat m;
  const char *from;  /* where the next search starts */
  const char *p;     /* the pattern */
  const char *last;  /* end of the last match: an empty match there is skipped */
} mb_gmatch;

static int mb_strlib_gmatch_next(lua_State *L) {
  mb_gmatch *g = (mb_gmatch *)lua_touserdata(L, lua_upvalueindex(3));
  const char *from;
  g->m.L = L; /* the iterator may run in another coroutine each time */
  for (from = g->from; from <= g->m.src_end; from++) {
    const char *e;
    mb_strlib_pat_reset(&g->m);
    if ((e = mb_strlib_pat_match(&g->m, from, g->p)) != NULL && e != g->last) {
      g->from = g->last = e;
      return mb_strlib_pat_push_captures(&g->m, from, e, 1);
    }
  }
  g->from = g->m.src_end + 1; /* nothing more: do not search again */
  mb_strlib_pat_settle(&g->m);
  return 0;
}

static int mb_strlib_gmatch(lua_State *L) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = mb_strlib_posrelat(luaL_optinteger(L, 3, 1), ls) - 1;
  mb_gmatch *g;
  lua_settop(L, 2);
  g = (mb_gmatch *)lua_newuserdatauv(L, sizeof *g, 0);
  if (init > ls) init = ls + 1; /* past the end, without overflowing */
  mb_strlib_pat_init(&g->m, L, s, ls, p, lp);
  g->from = s + init;
  g->p = p;
  g->last = NULL;
  lua_pushcclosure(L, mb_strlib_gmatch_next, 3);
  return 1;
}

/* ---------------------------------------------------------------------
** gsub.
** ------------------------------------------------------------------- */

/* Append the replacement string (argument 3) for the match [s, e): "%0" is
** the match, "%1".."%9" a capture, "%%" a '%'. */
static void mb_strlib_gsub_add_string(mb_pat *m, luaL_Buffer *b, const char *s, const char *e) {
  lua_State *L = m->L;
  size_t l;
  const char *r = lua_tolstring(L, 3, &l), *end = r + l, *pc;
  while ((pc = memchr(r, '%', (size_t)(end - r))) != NULL) {
    int c = (unsigned char)pc[1]; /* the '\0' after the string when '%' ends it */
    luaL_addlstring(b, r, (size_t)(pc - r));
    if (c == '%') {
      luaL_addchar(b, '%');
    } else if (c == '0') {
      luaL_addlstring(b, s, (size_t)(e - s));
    } else if (isdigit(c)) {
      mb_strlib_pat_push_capture(m, c - '1', s, e);
      luaL_addvalue(b); /* a position is added as its number */
    } else {
      luaL_error(L, "invalid use of '%c' in replacement string", '%');
    }
    r = pc + 2;
  }
  luaL_addlstring(b, r, (size_t)(end - r));
}

/* Append the replacement for the match [s, e), by the kind of argument 3.
** Returns whether the subject changed: a function or table giving false
** or nil keeps the match as it was. */
static int mb_strlib_gsub_add(mb_pat *m, luaL_Buffer *b, const char *s, const char *e, int kind) {
  lua_State *L = m->L;
  if (kind == LUA_TFUNCTION) {
    int n;
    lua_pushvalue(L, 3);
    n = mb_strlib_pat_push_captures(m, s, e, 1);
    lua_call(L, n, 1); /* cannot yield, as stock: a Go call here says so */
  } else if (kind == LUA_TTABLE) {
    mb_strlib_pat_push_capture(m, 0, s, e);
    lua_gettable(L, 3);
  } else {
    mb_strlib_gsub_add_string(m, b, s, e);
    return 1;
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(b, s, (size_t)(e - s));
    return 0;
  }
  if (!lua_isstring(L, -1))
    return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(b);
  return 1;
}

static int mb_strlib_gsub(lua_State *L) {
  size_t ls, lp;
  const char *src = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  int kind = lua_type(L, 3);
  lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1), n = 0;
  const char *last = NULL; /* end of the last match */
  int anchor = *p == '^', changed = 0;
  size_t added = 0; /* buffer length already charged */
  mb_pat m;
  luaL_Buffer b;
  luaL_argexpected(L, kind == LUA_TNUMBER || kind == LUA_TSTRING ||
                      kind == LUA_TFUNCTION || kind == LUA_TTABLE,
                   3, "string/function/table");
  luaL_buffinit(L, &b);
  if (anchor) {
    p++;
    lp--;
  }
  mb_strlib_pat_init(&m, L, src, ls, p, lp);
  while (n < max) {
    const char *e;
    mb_strlib_pat_reset(&m);
    if ((e = mb_strlib_pat_match(&m, src, p)) != NULL && e != last) {
      n++;
      changed |= mb_strlib_gsub_add(&m, &b, src, e, kind);
      src = last = e;
      if (luaL_bufflen(&b) - added >= MB_STR_BATCH * MB_STR_BYTES) {
        mb_strlib_pat_step(&m, (int64_t)((luaL_bufflen(&b) - added) / MB_STR_BYTES));
        added = luaL_bufflen(&b);
      }
    } else if (src < m.src_end) {
      luaL_addchar(&b, *src++);
    } else {
      break;
    }
    if (anchor) break;
  }
  mb_strlib_pat_settle(&m);
  if (!changed) {
    lua_pushvalue(L, 1); /* the subject itself */
  } else {
    luaL_addlstring(&b, src, (size_t)(m.src_end - src));
    mb_strlib_charge_bytes(L, luaL_bufflen(&b)); /* the copy into a string */
    luaL_pushresult(&b);
  }
  lua_pushinteger(L, n);
  return 2;
}

/* ---------------------------------------------------------------------
** rep.
** ------------------------------------------------------------------- */

/* string.rep(s, n [, sep]): n copies of s separated by sep. The buffer is
** filled by doubling what is already there (one memcpy per doubling, not
** one per copy: stock's loop of n empty copies never ends for
** rep("", 1e18)), charged as it goes. */
static int mb_strlib_rep(lua_State *L) {
  size_t l, lsep, unit, total, done, chunk, step;
  const char *s = luaL_checklstring(L, 1, &l);
  lua_Integer n = luaL_checkinteger(L, 2);
  const char *sep = luaL_optlstring(L, 3, "", &lsep);
  luaL_Buffer b;
  char *out;
  if (n <= 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  if (l + lsep < l || l + lsep > MB_STR_MAXSIZE / (size_t)n)
    return luaL_error(L, "resulting string too large");
  unit = l + lsep;
  total = (size_t)n * l + (size_t)(n - 1) * lsep;
  if (total == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  out = luaL_buffinitsize(L, &b, total);
  memcpy(out, s, l);
  if (n > 1) memcpy(out + l, sep, lsep);
  /* The result is unit repeated, cut after the last s. Each copy doubles a
  ** prefix that is a whole number of units (or ends the string). */
  step = MB_REP_STEP < unit ? unit : MB_REP_STEP - MB_REP_STEP % unit;
  for (done = n > 1 ? unit : total; done < total; done += chunk) {
    chunk = total - done;
    if (chunk > done) chunk = done;
    if (chunk > step) chunk = step;
    memcpy(out + done, out, chunk);
    mb_strlib_charge_bytes(L, chunk);
  }
  mb_strlib_charge_bytes(L, total); /* the copy into a string */
  luaL_pushresultsize(&b, total);
  return 1;
}

/* ---------------------------------------------------------------------
** The linear ones: sub, byte, upper, lower, reverse. Each is one pass, but
** over a string as long as memory allows (a loop of s:upper() on 30 MB
** held a 200 ms deadline for 11 s: the hook counts it as one instruction),
** so they charge their bytes too: before copying, or chunk by chunk.
** ------------------------------------------------------------------- */

/* The end position argument arg of sub and byte (default def): negative
** counts from the end, and it is clipped to [0, len]. */
static size_t mb_strlib_endpos(lua_State *L, int arg, lua_Integer def, size_t len) {
  lua_Integer pos = luaL_optinteger(L, arg, def);
  if (pos > (lua_Integer)len) return len;
  if (pos >= 0) return (size_t)pos;
  if (pos < -(lua_Integer)len) return 0;
  return len + (size_t)pos + 1;
}

static int mb_strlib_sub(lua_State *L) {
  size_t l;
  const char *s = luaL_checklstring(L, 1, &l);
  size_t start = mb_strlib_posrelat(luaL_checkinteger(L, 2), l);
  size_t end = mb_strlib_endpos(L, 3, -1, l);
  if (start > end) {
    lua_pushliteral(L, "");
    return 1;
  }
  mb_strlib_charge_bytes(L, end - start + 1);
  lua_pushlstring(L, s + start - 1, end - start + 1);
  return 1;
}

static int mb_strlib_byte(lua_State *L) {
  size_t l, first, last;
  const char *s = luaL_checklstring(L, 1, &l);
  lua_Integer pi = luaL_optinteger(L, 2, 1);
  int i, n;
  last = mb_strlib_endpos(L, 3, pi, l);
  first = mb_strlib_posrelat(pi, l);
  if (first > last) return 0;
  if (last - first >= (size_t)INT_MAX) return luaL_error(L, "string slice too long");
  n = (int)(last - first) + 1;
  luaL_checkstack(L, n, "string slice too long");
  if (n >= 256) mb_limit_charge(L, n); /* a step a value */
  for (i = 0; i < n; i++) lua_pushinteger(L, (unsigned char)s[first - 1 + i]);
  return n;
}

/* What upper, lower and reverse do to each chunk of the subject. */
enum { MB_MAP_UPPER, MB_MAP_LOWER, MB_MAP_REVERSE };

/* Make the result of op on the subject (argument 1), a chunk at a time,
** charging each. */
static int mb_strlib_map(lua_State *L, int op) {
  size_t l, i, n;
  const char *s = luaL_checklstring(L, 1, &l);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, l);
  for (i = 0; i < l; i += n) {
    size_t j;
    n = l - i < MB_REP_STEP ? l - i : MB_REP_STEP;
    switch (op) {
      case MB_MAP_UPPER:
        for (j = i; j < i + n; j++) out[j] = (char)toupper((unsigned char)s[j]);
        break;
      case MB_MAP_LOWER:
        for (j = i; j < i + n; j++) out[j] = (char)tolower((unsigned char)s[j]);
        break;
      default:
        for (j = i; j < i + n; j++) out[j] = s[l - j - 1];
        break;
    }
    mb_strlib_charge_bytes(L, 4 * n); /* a few times a copy's cost */
  }
  mb_strlib_charge_bytes(L, l); /* the copy into a string */
  luaL_pushresultsize(&b, l);
  return 1;
}

static int mb_strlib_upper(lua_State *L) { return mb_strlib_map(L, MB_MAP_UPPER); }
static int mb_strlib_lower(lua_State *L) { return mb_strlib_map(L, MB_MAP_LOWER); }
static int mb_strlib_reverse(lua_State *L) { return mb_strlib_map(L, MB_MAP_REVERSE); }

/* ---------------------------------------------------------------------
** utf8.len, utf8.codepoint and utf8.offset: linear in the string too.
** ------------------------------------------------------------------- */
#define MB_UTF8_MAXUNICODE 0x10FFFFu

/* Is the byte at p a continuation byte (10xxxxxx)? */
#define mb_strlib_utf8_iscont(p) ((*(p) & 0xC0) == 0x80)

/* Lua's relative position for utf8: negative counts from the end, and
** anything before the start is 0. */
static lua_Integer mb_strlib_utf8_posrelat(lua_Integer pos, size_t len) {
  if (pos >= 0) return pos;
  if (0u - (size_t)pos > len) return 0;
  return (lua_Integer)len + pos + 1;
}

/* Decode the sequence at s: its end, with the code in *code (if code is
** not NULL); NULL if it is not valid UTF-8 as Lua 5.4 reads it: up to six
** bytes (codes below 2^31), no overlong forms, and, when strict, no
** surrogates and nothing past 10FFFF. The '\0' after a Lua string stops a
** truncated sequence. */
static const char *mb_strlib_utf8_decode(const char *s, uint32_t *code, int strict) {
  static const uint32_t least[] = {0, 0x80, 0x800, 0x10000u, 0x200000u, 0x4000000u};
  unsigned c = (unsigned char)s[0];
  uint32_t res = c;
  int n = 0, i;
  if (c >= 0x80) {
    if (c < 0xC0 || c >= 0xFE) return NULL; /* a continuation byte, or no length */
    n = c >= 0xFC ? 5 : c >= 0xF8 ? 4 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
    res = c & (0x3Fu >> n);
    for (i = 1; i <= n; i++) {
      unsigned cc = (unsigned char)s[i];
      if ((cc & 0xC0) != 0x80) return NULL;
      res = (res << 6) | (cc & 0x3F);
    }
    if (res < least[n]) return NULL;
  }
  if (strict && (res > MB_UTF8_MAXUNICODE || (res >= 0xD800u && res <= 0xDFFFu))) return NULL;
  if (code != NULL) *code = res;
  return s + n + 1;
}

/* utf8.len(s [, i [, j [, lax]]]): the number of characters, or fail and
** the position of the first invalid byte. */
static int mb_strlib_utf8_len(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer i = mb_strlib_utf8_posrelat(luaL_optinteger(L, 2, 1), len);
  lua_Integer j = mb_strlib_utf8_posrelat(luaL_optinteger(L, 3, -1), len);
  lua_Integer n = 0, start;
  int strict = !lua_toboolean(L, 4);
  luaL_argcheck(L, 1 <= i && --i <= (lua_Integer)len, 2, "initial position out of bounds");
  luaL_argcheck(L, --j < (lua_Integer)len, 3, "final position out of bounds");
  start = i;
  while (i <= j) {
    const char *e = mb_strlib_utf8_decode(s + i, NULL, strict);
    if (e == NULL) {
      luaL_pushfail(L);
      lua_pushinteger(L, i + 1);
      return 2;
    }
    i = e - s;
    if ((++n & 0xFFFF) == 0) { /* every 64K characters */
      mb_strlib_charge_bytes(L, (size_t)(i - start));
      start = i;
    }
  }
  mb_strlib_charge_bytes(L, (size_t)(i - start));
  lua_pushinteger(L, n);
  return 1;
}

/* utf8.codepoint(s [, i [, j [, lax]]]): the codes of the characters
** starting in s[i..j]. */
static int mb_strlib_utf8_codepoint(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len), *end;
  lua_Integer i = mb_strlib_utf8_posrelat(luaL_optinteger(L, 2, 1), len);
  lua_Integer j = mb_strlib_utf8_posrelat(luaL_optinteger(L, 3, i), len);
  int n, strict = !lua_toboolean(L, 4);
  luaL_argcheck(L, i >= 1, 2, "out of bounds");
  luaL_argcheck(L, j <= (lua_Integer)len, 3, "out of bounds");
  if (i > j) return 0;
  if (j - i >= INT_MAX) return luaL_error(L, "string slice too long");
  n = (int)(j - i) + 1; /* at most this many codes */
  luaL_checkstack(L, n, "string slice too long");
  if (n >= 256) mb_limit_charge(L, n); /* a step a byte */
  n = 0;
  end = s + j;
  for (s += i - 1; s < end; n++) {
    uint32_t code;
    if ((s = mb_strlib_utf8_decode(s, &code, strict)) == NULL) return luaL_error(L, "invalid UTF-8 code");
    lua_pushinteger(L, code);
  }
  return n;
}

/* utf8.offset(s, n [, i]): where the n-th character (counting from the
** one at i) starts. */
static int mb_strlib_utf8_offset(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer n = luaL_checkinteger(L, 2);
  lua_Integer i = mb_strlib_utf8_posrelat(luaL_optinteger(L, 3, n >= 0 ? 1 : (lua_Integer)len + 1), len);
  lua_Integer from;
  luaL_argcheck(L, 1 <= i && --i <= (lua_Integer)len, 3, "position out of bounds");
  from = i;
  if (n == 0) { /* the start of the character i is in */
    while (i > 0 && mb_strlib_utf8_iscont(s + i)) i--;
  } else {
    if (mb_strlib_utf8_iscont(s + i)) return luaL_error(L, "initial position is a continuation byte");
    if (n < 0) {
      for (; n < 0 && i > 0; n++)
        do i--; while (i > 0 && mb_strlib_utf8_iscont(s + i));
    } else {
      for (n--; n > 0 && i < (lua_Integer)len; n--)
        do i++; while (mb_strlib_utf8_iscont(s + i)); /* the '\0' at the end stops it */
    }
  }
  mb_strlib_charge_bytes(L, (size_t)(i > from ? i - from : from - i));
  if (n == 0)
    lua_pushinteger(L, i + 1);
  else
    luaL_pushfail(L);
  return 1;
}

/* utf8.codes(s [, lax]) as Lua 5.4.6 has it: 5.4.4's iterator skipped a
** continuation byte that follows a character (or starts the string)
** instead of failing (a bug on lua.org's list for 5.4.4), so "\x80hello"
** and "hel\x80lo" iterated as valid. The iterator's control is the
** previous character's position (1-based): it skips that character's
** continuation bytes, decodes the next one, and fails if a continuation
** byte follows it. O(1) a step: the loop's instructions pay for it. */
static int mb_strlib_utf8_codes_next(lua_State *L, int strict) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Unsigned n = (lua_Unsigned)lua_tointeger(L, 2);
  const char *next;
  uint32_t code;
  if (n < len) {
    while (mb_strlib_utf8_iscont(s + n)) n++; /* the rest of the previous one */
  }
  if (n >= len) return 0; /* also a negative control */
  next = mb_strlib_utf8_decode(s + n, &code, strict);
  if (next == NULL || mb_strlib_utf8_iscont(next)) return luaL_error(L, "invalid UTF-8 code");
  lua_pushinteger(L, (lua_Integer)n + 1);
  lua_pushinteger(L, code);
  return 2;
}

static int mb_strlib_utf8_codes_strict(lua_State *L) { return mb_strlib_utf8_codes_next(L, 1); }
static int mb_strlib_utf8_codes_lax(lua_State *L) { return mb_strlib_utf8_codes_next(L, 0); }

static int mb_strlib_utf8_codes(lua_State *L) {
  int lax = lua_toboolean(L, 2);
  const char *s = luaL_checkstring(L, 1);
  luaL_argcheck(L, !mb_strlib_utf8_iscont(s), 1, "invalid UTF-8 code");
  lua_pushcfunction(L, lax ? mb_strlib_utf8_codes_lax : mb_strlib_utf8_codes_strict);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 0);
  return 3;
}

/* ---------------------------------------------------------------------
** Installation.
** ------------------------------------------------------------------- */
static const luaL_Reg mb_strlib_funcs[] = {
  {"byte", mb_strlib_byte},
  {"find", mb_strlib_find},
  {"gmatch", mb_strlib_gmatch},
  {"gsub", mb_strlib_gsub},
  {"lower", mb_strlib_lower},
  {"match", mb_strlib_match},
  {"rep", mb_strlib_rep},
  {"reverse", mb_strlib_reverse},
  {"sub", mb_strlib_sub},
  {"upper", mb_strlib_upper},
  {NULL, NULL}
};

static const luaL_Reg mb_utf8lib_funcs[] = {
  {"codepoint", mb_strlib_utf8_codepoint},
  {"codes", mb_strlib_utf8_codes},
  {"len", mb_strlib_utf8_len},
  {"offset", mb_strlib_utf8_offset},
  {NULL, NULL}
};

void mb_strlib_open(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_STRLIBNAME);
  luaL_setfuncs(L, mb_strlib_funcs, 0);
  lua_getfield(L, -2, LUA_UTF8LIBNAME);
  luaL_setfuncs(L, mb_utf8lib_funcs, 0);
  lua_pop(L, 3);
}

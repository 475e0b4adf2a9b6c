/*
** tablib.c — table.move, concat, unpack, sort, insert and remove that
** honour the run's deadline and instruction limit.
**
** Layer: C core. Each of these loops over a range a script chooses
** (table.move({}, 1, 1e14, 1), or a __len that answers 2^62 to
** table.insert) inside one C call, where Lua's count hook cannot stop it.
** These do what Lua 5.4's do — the same element accesses in the same order
** through lua_geti, lua_seti, luaL_len and lua_compare, so __index,
** __newindex, __len, __lt and __eq see what they see under stock Lua, and
** the same errors — and charge their work with mb_limit_charge as they go.
** Callbacks (sort's comparator, metamethods) are called with lua_call, as
** stock: they cannot yield, and a Go call inside one says that
** 'table.sort' is in the way.
*/
#include <limits.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lualib.h>

#include "limit.h"
#include "tablib.h"

/* An element read, written or compared costs MB_TAB_ELEM steps, about
** what the same work costs in VM instructions as a Lua loop. Loops run in
** blocks of MB_TAB_EVERY elements and charge each block when it is done (a
** full block is a batch: the clock is looked at too). */
#define MB_TAB_ELEM 4
#define MB_TAB_EVERY 256

/* The end of the block of a loop from i up to end (exclusive; i < end,
** and end - i may not fit in a lua_Integer). */
static inline lua_Integer mb_tablib_block(lua_Integer i, lua_Integer end) {
  return (lua_Unsigned)end - (lua_Unsigned)i > MB_TAB_EVERY ? i + MB_TAB_EVERY : end;
}

/* A block of n elements is done: charge it, unless it is too small to be
** worth a call (one VM instruction's worth). */
static void mb_tablib_charge(lua_State *L, lua_Unsigned n) {
  if (n >= 16) mb_limit_charge(L, (int64_t)n * MB_TAB_ELEM);
}

/* table.concat also charges the bytes it appends, a step per MB_TAB_BYTES,
** with its elements. */
#define MB_TAB_BYTES 16
#define MB_TAB_BYTES_EVERY 16384 /* below this, the final copy is free */

/* What an argument must allow when it is not a table. */
enum { MB_TAB_R = 1, MB_TAB_W = 2, MB_TAB_L = 4 };

static int mb_tablib_has(lua_State *L, int mt, const char *event) {
  int t;
  lua_pushstring(L, event);
  t = lua_rawget(L, mt);
  lua_pop(L, 1);
  return t != LUA_TNIL;
}

/* Argument arg must be a table, or have a metatable with the metamethods
** the function needs (__index to read, __newindex to write, __len). */
static void mb_tablib_check(lua_State *L, int arg, int what) {
  int ok, mt;
  if (lua_type(L, arg) == LUA_TTABLE) return;
  if (!lua_getmetatable(L, arg)) luaL_checktype(L, arg, LUA_TTABLE);
  mt = lua_gettop(L);
  ok = (!(what & MB_TAB_R) || mb_tablib_has(L, mt, "__index")) &&
       (!(what & MB_TAB_W) || mb_tablib_has(L, mt, "__newindex")) &&
       (!(what & MB_TAB_L) || mb_tablib_has(L, mt, "__len"));
  lua_pop(L, 1);
  if (!ok) luaL_checktype(L, arg, LUA_TTABLE);
}

/* The length of argument arg, which must also allow what. */
static lua_Integer mb_tablib_len(lua_State *L, int arg, int what) {
  mb_tablib_check(L, arg, what | MB_TAB_L);
  return luaL_len(L, arg);
}

/* ---------------------------------------------------------------------
** insert, remove, move.
** ------------------------------------------------------------------- */

/* table.insert(t, [pos,] v): shift t[pos..#t] up by one. */
static int mb_tablib_insert(lua_State *L) {
  lua_Integer pos, i;
  /* the first free slot; wraps around like stock's luaL_intop */
  lua_Integer e = (lua_Integer)((lua_Unsigned)mb_tablib_len(L, 1, MB_TAB_R | MB_TAB_W) + 1u);
  switch (lua_gettop(L)) {
    case 2:
      pos = e;
      break;
    case 3:
      pos = luaL_checkinteger(L, 2);
      luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2, "position out of bounds");
      for (i = e; i > pos;) { /* t[i] = t[i - 1], down to pos + 1 */
        lua_Integer stop = (lua_Unsigned)i - (lua_Unsigned)pos > MB_TAB_EVERY ? i - MB_TAB_EVERY : pos;
        lua_Integer first = i;
        for (; i > stop; i--) {
          lua_geti(L, 1, i - 1);
          lua_seti(L, 1, i);
        }
        mb_tablib_charge(L, (lua_Unsigned)(first - i));
      }
      break;
    default:
      return luaL_error(L, "wrong number of arguments to 'insert'");
  }
  lua_seti(L, 1, pos);
  return 0;
}

/* table.remove(t [, pos]): shift t[pos+1..#t] down by one. */
static int mb_tablib_remove(lua_State *L) {
  lua_Integer size = mb_tablib_len(L, 1, MB_TAB_R | MB_TAB_W);
  lua_Integer pos = luaL_optinteger(L, 2, size), first;
  if (pos != size) /* an explicit position may be #t + 1 (stock names argument 1) */
    luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 1, "position out of bounds");
  lua_geti(L, 1, pos);
  while (pos < size) { /* t[pos] = t[pos + 1], up to size - 1 */
    lua_Integer stop = mb_tablib_block(pos, size);
    first = pos;
    for (; pos < stop; pos++) {
      lua_geti(L, 1, pos + 1);
      lua_seti(L, 1, pos);
    }
    mb_tablib_charge(L, (lua_Unsigned)(pos - first));
  }
  lua_pushnil(L);
  lua_seti(L, 1, pos);
  return 1;
}

/* table.move(a1, f, e, t [, a2]): a2[t..] = a1[f..e], copying in the
** direction that reads each element before it is overwritten. */
static int mb_tablib_move(lua_State *L) {
  lua_Integer f = luaL_checkinteger(L, 2);
  lua_Integer e = luaL_checkinteger(L, 3);
  lua_Integer t = luaL_checkinteger(L, 4);
  int dst = !lua_isnoneornil(L, 5) ? 5 : 1;
  mb_tablib_check(L, 1, MB_TAB_R);
  mb_tablib_check(L, dst, MB_TAB_W);
  if (e >= f) {
    lua_Integer n, i;
    luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
    n = e - f + 1;
    luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
    if (t > e || t <= f || (dst != 1 && !lua_compare(L, 1, dst, LUA_OPEQ))) {
      for (i = 0; i < n;) {
        lua_Integer stop = mb_tablib_block(i, n), first = i;
        for (; i < stop; i++) {
          lua_geti(L, 1, f + i);
          lua_seti(L, dst, t + i);
        }
        mb_tablib_charge(L, (lua_Unsigned)(i - first));
      }
    } else { /* overlapping, moving up: from the end */
      for (i = n - 1; i >= 0;) {
        lua_Integer stop = i >= MB_TAB_EVERY ? i - MB_TAB_EVERY : -1, first = i;
        for (; i > stop; i--) {
          lua_geti(L, 1, f + i);
          lua_seti(L, dst, t + i);
        }
        mb_tablib_charge(L, (lua_Unsigned)(first - i));
      }
    }
  }
  lua_pushvalue(L, dst);
  return 1;
}

/* ---------------------------------------------------------------------
** concat, unpack.
** ------------------------------------------------------------------- */

/* Append t[i], which must be a string or a number. */
static void mb_tablib_addfield(lua_State *L, luaL_Buffer *b, lua_Integer i) {
  lua_geti(L, 1, i);
  if (!lua_isstring(L, -1))
    luaL_error(L, "invalid value (%s) at index %I in table for 'concat'",
               luaL_typename(L, -1), (LUAI_UACINT)i);
  luaL_addvalue(b);
}

/* table.concat(t [, sep [, i [, j]]]). Bytes appended are charged too. */
static int mb_tablib_concat(lua_State *L) {
  size_t lsep, charged = 0;
  luaL_Buffer b;
  lua_Integer last = mb_tablib_len(L, 1, MB_TAB_R);
  const char *sep = luaL_optlstring(L, 2, "", &lsep);
  lua_Integer i = luaL_optinteger(L, 3, 1), first = i;
  last = luaL_optinteger(L, 4, last);
  luaL_buffinit(L, &b);
  for (; i < last; i++) {
    mb_tablib_addfield(L, &b, i);
    luaL_addlstring(&b, sep, lsep);
    if ((i & (MB_TAB_EVERY - 1)) == MB_TAB_EVERY - 1) { /* once in 256: elements and bytes */
      mb_limit_charge(L, MB_TAB_EVERY * MB_TAB_ELEM + (int64_t)((luaL_bufflen(&b) - charged) / MB_TAB_BYTES));
      charged = luaL_bufflen(&b);
    }
  }
  if (i == last) mb_tablib_addfield(L, &b, i); /* the last one, without a separator */
  if (i > first) mb_tablib_charge(L, ((lua_Unsigned)i - (lua_Unsigned)first) % MB_TAB_EVERY);
  if (luaL_bufflen(&b) >= MB_TAB_BYTES_EVERY) /* what is not charged, and the copy into a string */
    mb_limit_charge(L, (int64_t)((2 * luaL_bufflen(&b) - charged) / MB_TAB_BYTES));
  luaL_pushresult(&b);
  return 1;
}

/* table.unpack(t [, i [, j]]): t[i], ..., t[j]. */
static int mb_tablib_unpack(lua_State *L) {
  lua_Unsigned n;
  lua_Integer i = luaL_optinteger(L, 2, 1);
  lua_Integer e = luaL_opt(L, luaL_checkinteger, 3, luaL_len(L, 1));
  if (i > e) return 0;
  n = (lua_Unsigned)e - (lua_Unsigned)i; /* one less than the count: cannot overflow */
  if (n >= (unsigned int)INT_MAX || !lua_checkstack(L, (int)(++n)))
    return luaL_error(L, "too many results to unpack");
  /* Charged first, as string.byte does: the limit's error, raised once
  ** the stack is full of results, would have no room to be built. */
  mb_tablib_charge(L, n); /* at most a million or so: the stack's limit */
  for (; i < e; i++) /* stop before e: e + 1 may overflow */
    lua_geti(L, 1, i);
  lua_geti(L, 1, e);
  return (int)n;
}

/* ---------------------------------------------------------------------
** sort: quicksort with a median-of-three pivot, partitioned in place
** through lua_geti/lua_seti. It reads, writes and compares the elements in
** the order stock Lua's does, so the result (the order of equal elements
** too) is the same, and an order function that is not a strict order is
** caught the same way: a scan that runs past the end of its partition.
** Once a partition comes out badly unbalanced, pivots are picked at random
** in the middle half (stock does the same, seeded by the clock).
** ------------------------------------------------------------------- */
typedef unsigned int mb_idx;

/* Partitions larger than this may use a random pivot. */
#define MB_SORT_RANDOM_MIN 100u

typedef struct mb_sort {
  lua_State *L;
  int has_fn;     /* argument 2 is the order function */
  lua_Integer done; /* comparisons */
} mb_sort;

/* Is the value at stack index a less than the one at b? Both relative to
** the top, as the stack grows while comparing. */
static int mb_tablib_sort_less(mb_sort *s, int a, int b) {
  lua_State *L = s->L;
  int less;
  if ((++s->done & (MB_TAB_EVERY - 1)) == 0) mb_limit_charge(L, MB_TAB_EVERY * MB_TAB_ELEM);
  if (!s->has_fn) return lua_compare(L, a, b, LUA_OPLT);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, a - 1);
  lua_pushvalue(L, b - 2);
  lua_call(L, 2, 1); /* cannot yield, as stock */
  less = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return less;
}

/* Push t[i]. */
static void mb_tablib_sort_get(mb_sort *s, mb_idx i) {
  lua_geti(s->L, 1, i);
}

/* t[i] = the top value, t[j] = the one under it; both popped. */
static void mb_tablib_sort_put2(mb_sort *s, mb_idx i, mb_idx j) {
  lua_seti(s->L, 1, i);
  lua_seti(s->L, 1, j);
}

static void mb_tablib_sort_invalid(mb_sort *s) {
  luaL_error(s->L, "invalid order function for sorting");
}

/* A seed for random pivots: the clock, as stock. */
static unsigned mb_tablib_sort_seed(void) {
  uint64_t t = uv_hrtime();
  return (unsigned)(t ^ (t >> 32));
}

/* Put t[lo], t[mid] and t[up] in order; mid is the pivot's index. */
static void mb_tablib_sort_three(mb_sort *s, mb_idx lo, mb_idx mid, mb_idx up, int two_only) {
  mb_tablib_sort_get(s, lo);
  mb_tablib_sort_get(s, up);
  if (mb_tablib_sort_less(s, -1, -2)) /* t[up] < t[lo] */
    mb_tablib_sort_put2(s, lo, up);
  else
    lua_pop(s->L, 2);
  if (two_only) return;
  mb_tablib_sort_get(s, mid);
  mb_tablib_sort_get(s, lo);
  if (mb_tablib_sort_less(s, -2, -1)) { /* t[mid] < t[lo] */
    mb_tablib_sort_put2(s, mid, lo);
    return;
  }
  lua_pop(s->L, 1);
  mb_tablib_sort_get(s, up);
  if (mb_tablib_sort_less(s, -1, -2)) /* t[up] < t[mid] */
    mb_tablib_sort_put2(s, mid, up);
  else
    lua_pop(s->L, 2);
}

/* Partition t[lo..up] around the pivot P, on the stack's top and already
** moved to t[up - 1] (t[lo] <= P <= t[up] hold). Returns P's final index:
** everything before it is <= P, everything after >= P. P is popped. */
static mb_idx mb_tablib_sort_partition(mb_sort *s, mb_idx lo, mb_idx up) {
  lua_State *L = s->L;
  mb_idx i = lo, j = up - 1;
  for (;;) {
    /* Up from lo while t[i] < P: t[up - 1] == P must stop it. */
    for (mb_tablib_sort_get(s, ++i); mb_tablib_sort_less(s, -1, -2); mb_tablib_sort_get(s, ++i)) {
      if (i == up - 1) mb_tablib_sort_invalid(s);
      lua_pop(L, 1);
    }
    /* Down from up - 1 while P < t[j]: t[lo] <= P must stop it. */
    for (mb_tablib_sort_get(s, --j); mb_tablib_sort_less(s, -3, -1); mb_tablib_sort_get(s, --j)) {
      if (j < i) mb_tablib_sort_invalid(s);
      lua_pop(L, 1);
    }
    if (j < i) { /* crossed: P goes to i, t[i] to up - 1 */
      lua_pop(L, 1);
      mb_tablib_sort_put2(s, up - 1, i);
      return i;
    }
    mb_tablib_sort_put2(s, i, j); /* swap t[i] and t[j] and go on */
  }
}

/* Sort t[lo..up]: recurse into the smaller part, loop on the larger, so
** the C stack grows with log(n) at most. */
static void mb_tablib_sort_range(mb_sort *s, mb_idx lo, mb_idx up, unsigned rnd) {
  while (lo < up) {
    mb_idx p, small;
    if (up - lo == 1) { /* two elements */
      mb_tablib_sort_three(s, lo, lo, up, 1);
      return;
    }
    if (up - lo < MB_SORT_RANDOM_MIN || rnd == 0) {
      p = (lo + up) / 2;
    } else {
      mb_idx quarter = (up - lo) / 4;
      p = rnd % (quarter * 2) + (lo + quarter);
    }
    mb_tablib_sort_three(s, lo, p, up, 0);
    if (up - lo == 2) return; /* three elements: in order now */
    mb_tablib_sort_get(s, p); /* the pivot P: kept on the stack, and moved to up - 1 */
    lua_pushvalue(s->L, -1);
    mb_tablib_sort_get(s, up - 1);
    mb_tablib_sort_put2(s, p, up - 1);
    p = mb_tablib_sort_partition(s, lo, up);
    if (p - lo < up - p) {
      mb_tablib_sort_range(s, lo, p - 1, rnd);
      small = p - lo;
      lo = p + 1;
    } else {
      mb_tablib_sort_range(s, p + 1, up, rnd);
      small = up - p;
      up = p - 1;
    }
    if ((up - lo) / 128 > small) rnd = mb_tablib_sort_seed(); /* badly unbalanced */
  }
}

/* table.sort(t [, comp]). */
static int mb_tablib_sort(lua_State *L) {
  lua_Integer n = mb_tablib_len(L, 1, MB_TAB_R | MB_TAB_W);
  if (n > 1) {
    mb_sort s;
    luaL_argcheck(L, n < INT_MAX, 1, "array too big");
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    s.L = L;
    s.has_fn = !lua_isnil(L, 2);
    s.done = 0;
    mb_tablib_sort_range(&s, 1, (mb_idx)n, 0);
    mb_tablib_charge(L, (lua_Unsigned)s.done % MB_TAB_EVERY);
  }
  return 0;
}

/* ---------------------------------------------------------------------
** Installation.
** ------------------------------------------------------------------- */
static const luaL_Reg mb_tablib_funcs[] = {
  {"concat", mb_tablib_concat},
  {"insert", mb_tablib_insert},
  {"move", mb_tablib_move},
  {"remove", mb_tablib_remove},
  {"sort", mb_tablib_sort},
  {"unpack", mb_tablib_unpack},
  {NULL, NULL}
};

void mb_tablib_open(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_TABLIBNAME);
  luaL_setfuncs(L, mb_tablib_funcs, 0);
  lua_pop(L, 2);
}

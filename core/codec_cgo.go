package core

// Test seam for the C codec: lets Go tests and fuzz targets drive
// mb_codec_decode and mb_codec_encode on a private lua_State.

/*
#include <stdio.h>
#include <stdlib.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "codec.h"

// A counting allocator, so tests can starve the decoder of memory.
typedef struct mb_test_alloc {
  size_t used, limit;  // limit 0: none
} mb_test_alloc;

static void *mb_test_allocf (void *ud, void *ptr, size_t osize, size_t nsize) {
  mb_test_alloc *a = (mb_test_alloc *)ud;
  void *p;
  if (ptr == NULL) osize = 0;  // osize then holds a type tag
  if (nsize == 0) {
    free(ptr);
    a->used -= osize;
    return NULL;
  }
  if (a->limit > 0 && nsize > osize && a->used + (nsize - osize) > a->limit)
    return NULL;
  p = realloc(ptr, nsize);
  if (p == NULL) return NULL;
  a->used = a->used - osize + nsize;
  return p;
}

typedef struct mb_test_decode {
  const char *data;
  size_t len;
  char *err;
  size_t errlen;
  int n;
} mb_test_decode;

// Runs under lua_pcall: a memory error raised by the decoder unwinds here.
static int mb_test_decodek (lua_State *L) {
  mb_test_decode *a = (mb_test_decode *)lua_touserdata(L, 1);
  lua_pop(L, 1);
  a->n = mb_codec_decode(L, a->data, a->len, a->err, a->errlen);
  if (a->n >= 0 ? lua_gettop(L) != a->n : lua_gettop(L) != 0) {
    snprintf(a->err, a->errlen, "decode left %d values on the stack, returned %d",
             lua_gettop(L), a->n);
    a->n = -1;
    return 0;
  }
  return a->n < 0 ? 0 : a->n;
}

// Decode data on a fresh state, then (if out is not NULL) encode every
// value back into out. Returns 0 or -1 with err set.
static int mb_test_roundtrip (const char *data, size_t len, size_t limit,
                              mb_buf *out, char *err, size_t errlen) {
  mb_test_alloc a = {0, limit};
  mb_test_decode args = {data, len, err, errlen, -1};
  lua_State *L = lua_newstate(mb_test_allocf, &a);
  int rc = -1;
  err[0] = '\0';
  if (L == NULL) {
    snprintf(err, errlen, "cannot create a Lua state");
    return -1;
  }
  lua_pushcfunction(L, mb_test_decodek);
  lua_pushlightuserdata(L, &args);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
    snprintf(err, errlen, "decode raised: %s", lua_tostring(L, -1));
    goto done;
  }
  if (args.n < 0)
    goto done;
  if (lua_gettop(L) != args.n) {
    snprintf(err, errlen, "pcall left %d values, decode pushed %d",
             lua_gettop(L), args.n);
    goto done;
  }
  if (out != NULL) {
    if (mb_codec_encode(L, 1, args.n, out, err, errlen))
      goto done;
    if (lua_gettop(L) != args.n) {
      snprintf(err, errlen, "encode changed the stack top");
      goto done;
    }
  }
  rc = 0;
done:
  lua_close(L);
  return rc;
}

// Run a chunk and encode its results from stack index first (negative:
// counted from the top) to the top.
static int mb_test_chunk (_GoString_ src, int first, mb_buf *out,
                          char *err, size_t errlen) {
  lua_State *L = luaL_newstate();
  int rc = -1, top, n;
  size_t before = out->len;
  err[0] = '\0';
  if (L == NULL) {
    snprintf(err, errlen, "cannot create a Lua state");
    return -1;
  }
  luaL_openlibs(L);
  if (luaL_loadbufferx(L, _GoStringPtr(src), _GoStringLen(src), "=chunk", "t") != LUA_OK ||
      lua_pcall(L, 0, LUA_MULTRET, 0) != LUA_OK) {
    snprintf(err, errlen, "chunk failed: %s", lua_tostring(L, -1));
    goto done;
  }
  top = lua_gettop(L);
  n = first > 0 ? top - first + 1 : -first;
  if (mb_codec_encode(L, first, n, out, err, errlen)) {
    if (out->len != before)
      snprintf(err, errlen, "failed encode left %zu bytes", out->len - before);
    else if (lua_gettop(L) != top)
      snprintf(err, errlen, "failed encode changed the stack top");
    goto done;
  }
  if (lua_gettop(L) != top) {
    snprintf(err, errlen, "encode changed the stack top");
    goto done;
  }
  rc = 0;
done:
  lua_close(L);
  return rc;
}

// Decode and re-encode a message iters times on one state, for benchmarks
// of the codec alone.
typedef struct mb_test_loop {
  const char *data;
  size_t len;
  int iters;
  mb_buf out;
  char *err;
  size_t errlen;
  int rc;
} mb_test_loop;

static int mb_test_loopk (lua_State *L) {
  mb_test_loop *a = (mb_test_loop *)lua_touserdata(L, 1);
  int i, n;
  lua_settop(L, 0);
  for (i = 0; i < a->iters; i++) {
    n = mb_codec_decode(L, a->data, a->len, a->err, a->errlen);
    if (n < 0) return 0;
    a->out.len = 0;
    if (mb_codec_encode(L, 1, n, &a->out, a->err, a->errlen)) return 0;
    lua_settop(L, 0);
  }
  a->rc = 0;
  return 0;
}

static int mb_test_loop_run (const char *data, size_t len, int iters,
                             char *err, size_t errlen) {
  mb_test_loop a = {data, len, iters, {0}, err, errlen, -1};
  lua_State *L = luaL_newstate();
  err[0] = '\0';
  if (L == NULL) {
    snprintf(err, errlen, "cannot create a Lua state");
    return -1;
  }
  lua_pushcfunction(L, mb_test_loopk);
  lua_pushlightuserdata(L, &a);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    snprintf(err, errlen, "loop raised: %s", lua_tostring(L, -1));
  mb_buf_free(&a.out);
  lua_close(L);
  return a.rc;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

const codecErrLen = 512

func codecBytesPtr(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&b[0]))
}

// takeBuf copies out and frees the C buffer.
func codecTakeBuf(out *C.mb_buf) []byte {
	defer C.mb_buf_free(out)
	if out.len == 0 {
		return []byte{}
	}
	return C.GoBytes(unsafe.Pointer(out.data), C.int(out.len))
}

// luaRoundTrip decodes msg onto a fresh lua_State with mb_codec_decode (in
// protected mode) and encodes all the values back with mb_codec_encode.
func luaRoundTrip(msg []byte) ([]byte, error) {
	var out C.mb_buf
	var errbuf [codecErrLen]C.char
	rc := C.mb_test_roundtrip(codecBytesPtr(msg), C.size_t(len(msg)), 0, &out, &errbuf[0], codecErrLen)
	b := codecTakeBuf(&out)
	if rc != 0 {
		return nil, fmt.Errorf("lua round trip: %w", errors.New(C.GoString(&errbuf[0])))
	}
	return b, nil
}

// luaDecodeCheck runs only the C decoder on msg.
func luaDecodeCheck(msg []byte) error {
	return luaDecodeLimited(msg, 0)
}

// luaDecodeLimited runs the C decoder on a state that may allocate at most
// limit bytes (0: no limit). The message is copied to a C allocation of its
// exact size, so that under -asan a read past its end is caught (Go's
// memory is not checked).
func luaDecodeLimited(msg []byte, limit int) error {
	var errbuf [codecErrLen]C.char
	var p unsafe.Pointer
	if len(msg) > 0 {
		p = C.CBytes(msg)
		defer C.free(p)
	}
	if C.mb_test_roundtrip((*C.char)(p), C.size_t(len(msg)), C.size_t(limit), nil, &errbuf[0], codecErrLen) != 0 {
		return errors.New(C.GoString(&errbuf[0]))
	}
	return nil
}

// luaEncodeChunk runs a Lua chunk and encodes all its results.
func luaEncodeChunk(src string) ([]byte, error) {
	return luaEncodeChunkFrom(src, 1)
}

// luaEncodeChunkFrom runs a Lua chunk and encodes its results from stack
// index first to the top; a negative first counts from the top.
func luaEncodeChunkFrom(src string, first int) ([]byte, error) {
	var out C.mb_buf
	var errbuf [codecErrLen]C.char
	rc := C.mb_test_chunk(src, C.int(first), &out, &errbuf[0], codecErrLen)
	b := codecTakeBuf(&out)
	if rc != 0 {
		return nil, errors.New(C.GoString(&errbuf[0]))
	}
	return b, nil
}

// luaCodecLoop decodes and re-encodes msg iters times on one lua_State.
func luaCodecLoop(msg []byte, iters int) error {
	var errbuf [codecErrLen]C.char
	if C.mb_test_loop_run(codecBytesPtr(msg), C.size_t(len(msg)), C.int(iters), &errbuf[0], codecErrLen) != 0 {
		return errors.New(C.GoString(&errbuf[0]))
	}
	return nil
}

/*
 * Minimal AF_PACKET binding for the PLC link (ISO 15118-3 SLAC frames, ethertype 0x88E1).
 * One raw socket bound to an interface and an ethertype; frames are delivered to a JS callback from a uv_poll
 * on the non-blocking fd. Needs CAP_NET_RAW. Written against N-API only, so one binary serves every Node ABI.
 *
 * JS API:
 *   open(ifindex, ethertype, seeOutgoing, onFrame(buf, outgoing)) -> handle
 *   send(handle, buf) -> bytes written
 *   close(handle)
 * ethertype 0x0003 (ETH_P_ALL) with seeOutgoing=true lets a simulator see frames other local sockets transmit.
 */
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <node_api.h>
#include <uv.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
#define MAX_FRAME 2048
#define MAX_BURST 64

typedef struct {
  int fd;
  int ifindex;
  unsigned short ethertype;
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  int closing; /* 0 open, 1 closing, 2 poll handle released */
  int finalized;
} link_t;

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, text, error;
  napi_create_string_utf8(env, "IO_FAILED", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  napi_value errnum;
  napi_create_int32(env, err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_throw(env, error);
  return NULL;
}

static void on_readable(uv_poll_t *poll, int status, int events) {
  (void)events;
  link_t *link = (link_t *)poll->data;
  if (link->closing || status < 0) return;
  napi_env env = link->env;
  unsigned char buf[MAX_FRAME];
  for (int i = 0; i < MAX_BURST && !link->closing; i++) {
    struct sockaddr_ll from;
    socklen_t fromlen = sizeof from;
    ssize_t n = recvfrom(link->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);
    if (n < 0) break; /* EAGAIN: drained */
    if (n < 14) continue;
    /* With ETH_P_ALL the kernel hands us every protocol: keep only ours (and VLAN-free frames). */
    unsigned short type = (unsigned short)((buf[12] << 8) | buf[13]);
    if (link->ethertype != ETH_P_ALL && type != link->ethertype) continue;
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value cb, recv, args[2], result;
    void *data;
    napi_create_buffer_copy(env, (size_t)n, buf, &data, &args[0]);
    napi_get_boolean(env, from.sll_pkttype == PACKET_OUTGOING, &args[1]);
    napi_get_reference_value(env, link->callback, &cb);
    napi_get_global(env, &recv); /* MakeCallback needs an object receiver */
    if (napi_make_callback(env, link->async, recv, cb, 2, args, &result) == napi_pending_exception) {
      /* A throwing listener is the program's bug: surface it as an uncaught exception, don't poison later calls. */
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
    napi_close_handle_scope(env, scope);
  }
}

static void finalize_link(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  link_t *link = (link_t *)data;
  link->finalized = 1;
  /* An open link's poll handle still points here: freed by on_poll_closed after close() instead. */
  if (link->closing == 2) free(link);
}

static void on_poll_closed(uv_handle_t *handle) {
  link_t *link = (link_t *)handle->data;
  link->closing = 2;
  if (link->finalized) free(link);
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) { napi_throw_type_error(env, NULL, "open(ifindex, ethertype, seeOutgoing, onFrame)"); return NULL; }
  int32_t ifindex = 0, ethertype = 0;
  bool outgoing = false;
  if (napi_get_value_int32(env, argv[0], &ifindex) != napi_ok || ifindex <= 0 ||
      napi_get_value_int32(env, argv[1], &ethertype) != napi_ok || ethertype <= 0 || ethertype > 0xffff ||
      napi_get_value_bool(env, argv[2], &outgoing) != napi_ok) {
    napi_throw_type_error(env, NULL, "bad ifindex/ethertype/seeOutgoing");
    return NULL;
  }
  napi_valuetype t;
  napi_typeof(env, argv[3], &t);
  if (t != napi_function) { napi_throw_type_error(env, NULL, "onFrame must be a function"); return NULL; }

  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons((unsigned short)ethertype));
  if (fd < 0) return throw_errno(env, "socket(AF_PACKET)", errno);
  struct sockaddr_ll addr;
  memset(&addr, 0, sizeof addr);
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons((unsigned short)ethertype);
  addr.sll_ifindex = ifindex;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { int e = errno; close(fd); return throw_errno(env, "bind(AF_PACKET)", e); }
  if (!outgoing) {
    int one = 1;
    /* Our own transmissions must not come back to us (a ETH_P_ALL tap would see them otherwise). */
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  }

  link_t *link = calloc(1, sizeof *link);
  if (!link) { close(fd); napi_throw_error(env, NULL, "out of memory"); return NULL; }
  link->fd = fd;
  link->ifindex = ifindex;
  link->ethertype = (unsigned short)ethertype;
  link->env = env;
  napi_create_reference(env, argv[3], 1, &link->callback);
  napi_value name;
  napi_create_string_utf8(env, "evcc:afpacket", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &link->async);

  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  uv_poll_init(loop, &link->poll, fd);
  link->poll.data = link;
  uv_poll_start(&link->poll, UV_READABLE, on_readable);

  napi_value handle;
  napi_create_external(env, link, finalize_link, NULL, &handle);
  return handle;
}

static link_t *get_link(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || !data) {
    napi_throw_type_error(env, NULL, "not a link handle");
    return NULL;
  }
  return (link_t *)data;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) { napi_throw_type_error(env, NULL, "send(handle, buf)"); return NULL; }
  link_t *link = get_link(env, argv[0]);
  if (!link) return NULL;
  if (link->fd < 0) { napi_throw_error(env, "IO_FAILED", "link closed"); return NULL; }
  void *data;
  size_t len;
  bool is_ta = false;
  napi_is_typedarray(env, argv[1], &is_ta);
  if (!is_ta) { napi_throw_type_error(env, NULL, "frame must be a Uint8Array"); return NULL; }
  napi_typedarray_type tt;
  napi_value ab;
  size_t off;
  napi_get_typedarray_info(env, argv[1], &tt, &len, &data, &ab, &off);
  if (len < 14 || len > 1514) { napi_throw_range_error(env, NULL, "frame length out of range"); return NULL; }
  struct sockaddr_ll to;
  memset(&to, 0, sizeof to);
  to.sll_family = AF_PACKET;
  to.sll_ifindex = link->ifindex;
  to.sll_halen = 6;
  memcpy(to.sll_addr, data, 6);
  ssize_t n = sendto(link->fd, data, len, 0, (struct sockaddr *)&to, sizeof to);
  if (n < 0) return throw_errno(env, "sendto(AF_PACKET)", errno);
  napi_value out;
  napi_create_int64(env, (int64_t)n, &out);
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_value undef;
  napi_get_undefined(env, &undef);
  if (argc < 1) return undef;
  link_t *link = get_link(env, argv[0]);
  if (!link || link->fd < 0) return undef;
  link->closing = 1;
  uv_poll_stop(&link->poll);
  uv_close((uv_handle_t *)&link->poll, on_poll_closed);
  close(link->fd);
  link->fd = -1;
  napi_delete_reference(env, link->callback);
  napi_async_destroy(env, link->async);
  return undef;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
    {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

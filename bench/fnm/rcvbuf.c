/*
 * rcvbuf.so: an LD_PRELOAD shim that gives every UDP socket a process binds a larger
 * receive buffer (SO_RCVBUFFORCE, so root only), for the throughput comparison with the
 * same 32 MiB buffer flowhound asks for. FastNetMon CE 1.2.4 has no setting for its
 * NetFlow socket's buffer and gets net.core.rmem_default (208 KiB); raising that sysctl
 * would change every socket on the host. Size: FHB_RCVBUF bytes (default 32 MiB).
 *
 *   cc -shared -fPIC -O2 -o rcvbuf.so rcvbuf.c -ldl
 *   LD_PRELOAD=./rcvbuf.so fastnetmon ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	static bind_fn real_bind;
	if (!real_bind)
		real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");

	int type = 0;
	socklen_t tl = sizeof type;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM) {
		int size = 32 << 20;
		const char *s = getenv("FHB_RCVBUF");
		if (s && atoi(s) > 0)
			size = atoi(s);
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	}
	return real_bind(fd, addr, len);
}

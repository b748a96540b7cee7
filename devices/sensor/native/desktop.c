/*
 * iotkx/desktop: the desktop (lin/mac) build's console on a loopback TCP port, and a host measurement for its
 * readings. The SDK's lin `socket` Listener binds every interface and cannot report an ephemeral port, so this
 * binds 127.0.0.1 only: the port is $IOTKX_CONSOLE_PORT, or one the OS picks (0); listen() returns it. One client at
 * a time (a new connection replaces the old one, as a serial cable would). Non-blocking: the board polls from a
 * timer. Not on ESP32 (the board's console is a UART there).
 */
#include "xsmc.h"
#include "xsHost.h"

#if defined(__linux__) || defined(__APPLE__)
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int gListener = -1;
static int gClient = -1;

static void closeClient(void)
{
	if (gClient >= 0) close(gClient);
	gClient = -1;
}

void xs_desktop_listen(xsMachine *the)
{
	struct sockaddr_in address = { 0 };
	socklen_t length = sizeof(address);
	const char *env = getenv("IOTKX_CONSOLE_PORT");
	int port = env ? atoi(env) : 0;
	int yes = 1;
	if (gListener < 0) {
		gListener = socket(AF_INET, SOCK_STREAM, 0);
		if (gListener < 0) xsUnknownError("console: socket failed");
		setsockopt(gListener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
		address.sin_family = AF_INET;
		address.sin_port = htons((uint16_t)port);
		address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(gListener, (struct sockaddr *)&address, sizeof(address)) < 0 || listen(gListener, 4) < 0) {
			close(gListener);
			gListener = -1;
			xsUnknownError("console: cannot listen on 127.0.0.1");
		}
		fcntl(gListener, F_SETFL, fcntl(gListener, F_GETFL) | O_NONBLOCK);
	}
	getsockname(gListener, (struct sockaddr *)&address, &length);
	xsmcSetInteger(xsResult, ntohs(address.sin_port));
}

/* Accept a waiting connection; return the bytes received since the last poll (ArrayBuffer), or undefined. */
void xs_desktop_poll(xsMachine *the)
{
	uint8_t buffer[1024];
	ssize_t n;
	if (gListener < 0) return;
	int c = accept(gListener, NULL, NULL);
	if (c >= 0) {
		closeClient();
		gClient = c;
		fcntl(gClient, F_SETFL, fcntl(gClient, F_GETFL) | O_NONBLOCK);
	}
	if (gClient < 0) return;
	n = recv(gClient, buffer, sizeof(buffer), 0);
	if (n > 0)
		xsmcSetArrayBuffer(xsResult, buffer, (xsUnsignedValue)n);
	else if ((n == 0) || ((errno != EAGAIN) && (errno != EWOULDBLOCK) && (errno != EINTR)))
		closeClient();
}

/* Send to the connected client (dropped when none, as bytes on an unplugged UART are). */
void xs_desktop_write(xsMachine *the)
{
	void *data;
	xsUnsignedValue length;
	size_t at = 0;
	int tries = 0;
	xsmcGetBufferReadable(xsArg(0), &data, &length);
	while ((gClient >= 0) && (at < length)) {
#ifdef MSG_NOSIGNAL
		ssize_t n = send(gClient, (uint8_t *)data + at, length - at, MSG_NOSIGNAL);
#else
		ssize_t n = send(gClient, (uint8_t *)data + at, length - at, 0);
#endif
		if (n > 0) { at += (size_t)n; continue; }
		if ((n < 0) && ((errno == EAGAIN) || (errno == EWOULDBLOCK) || (errno == EINTR)) && (tries++ < 1000)) { usleep(1000); continue; }
		closeClient();
	}
}

/* The host's 1-minute load average: the desktop build's stand-in measurement (it has no sensor chip). */
void xs_desktop_loadavg(xsMachine *the)
{
	double load[1];
	if (getloadavg(load, 1) != 1) xsUnknownError("getloadavg failed");
	xsmcSetNumber(xsResult, load[0]);
}
#else
void xs_desktop_listen(xsMachine *the) { xsUnknownError("console: no loopback console on this platform"); }
void xs_desktop_poll(xsMachine *the) { }
void xs_desktop_write(xsMachine *the) { }
void xs_desktop_loadavg(xsMachine *the) { xsUnknownError("no load average on this platform"); }
#endif

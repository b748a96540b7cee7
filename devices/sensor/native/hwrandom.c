/*
 * iotkx/hwrandom: random bytes from the chip's hardware RNG, for keys (PROTOCOL.md §2).
 * ESP32: esp_fill_random() is truly random only while Wi-Fi/BT RF is on (ESP-IDF docs);
 * before that the caller passes rfOff = true and the SAR-ADC entropy source is switched
 * on around the fill (bootloader_random_enable/disable; never while Wi-Fi runs).
 * Desktop builds (lin/mac/win) use the OS RNG: the SDK's c_rand is unseeded there and
 * Math.random / the `rng` module must never make keys (MODDABLE.md §3).
 */
#include "xsmc.h"
#include "xsHost.h"

#if ESP32
	#include "esp_random.h"
	#include "bootloader_random.h"
#elif defined(__linux__)
	#include <sys/random.h>
	#include <errno.h>
#elif defined(__APPLE__)
	#include <stdlib.h>
#elif defined(_WIN32)
	#include <windows.h>
	#include <bcrypt.h>
#endif

void xs_hwrandom_fill(xsMachine *the)
{
	void *data;
	xsUnsignedValue length;
	int rfOff = (xsmcArgc > 1) && xsmcToBoolean(xsArg(1));
	xsmcGetBufferWritable(xsArg(0), &data, &length);
#if ESP32
	if (rfOff) bootloader_random_enable();
	esp_fill_random(data, length);
	if (rfOff) bootloader_random_disable();
#elif defined(__linux__)
	(void)rfOff;
	uint8_t *p = data;
	while (length > 0) {
		ssize_t n = getrandom(p, length, 0);
		if (n < 0) {
			if (errno == EINTR) continue;
			xsUnknownError("getrandom failed");
		}
		p += n;
		length -= (xsUnsignedValue)n;
	}
#elif defined(__APPLE__)
	(void)rfOff;
	arc4random_buf(data, length);
#elif defined(_WIN32)
	(void)rfOff;
	if (BCryptGenRandom(NULL, data, (ULONG)length, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
		xsUnknownError("BCryptGenRandom failed");
#else
	(void)rfOff;
	xsUnknownError("no hardware random source on this platform");
#endif
}

/*
 * iotkx/hwrandom: random bytes from the chip's hardware RNG, for keys (PROTOCOL.md §2).
 * ESP32 (ESP-IDF "Random Number Generation"): esp_fill_random() is truly random while Wi-Fi/BT RF is on; with RF
 * off the SAR-ADC entropy source must be switched on around the fill (bootloader_random_enable/disable), and that
 * must never happen while Wi-Fi or BT runs. The RF state is read here, at the call, not trusted from JavaScript: a
 * build with a built-in SSID has Wi-Fi started before main runs. esp_wifi_get_mode() fails with
 * ESP_ERR_WIFI_NOT_INIT until Wi-Fi is initialised; any mode other than NULL means the radio is (being) started.
 * The second argument (rfOff) is ignored on ESP32 and kept for compatibility.
 * Desktop builds (lin/mac/win) use the OS RNG: the SDK's c_rand is unseeded there and
 * Math.random / the `rng` module must never make keys (MODDABLE.md §3).
 */
#include "xsmc.h"
#include "xsHost.h"

#if ESP32
	#include "esp_random.h"
	#include "bootloader_random.h"
	#include "esp_wifi.h"
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
	(void)rfOff;
	wifi_mode_t mode = WIFI_MODE_NULL;
	int radioOn = (esp_wifi_get_mode(&mode) == ESP_OK) && (mode != WIFI_MODE_NULL);
	if (!radioOn) bootloader_random_enable();
	esp_fill_random(data, length);
	if (!radioOn) bootloader_random_disable();
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

/* iotkx/restart: reboot the board (§6 `reboot`, after a factory reset). Desktop builds exit. */
#include "xsmc.h"
#include "xsHost.h"
#include <stdlib.h>
#if ESP32
	#include "esp_system.h"
#endif

void xs_iotkx_restart(xsMachine *the)
{
#if ESP32
	esp_restart();
#else
	exit(0);
#endif
}

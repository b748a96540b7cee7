/*
 * iotkx/chiptemp: the chip's internal temperature sensor (die temperature), the
 * fallback when no SHT3x answers. ESP-IDF's temperature_sensor driver exists on the
 * ESP32-C3/S3 (SOC_TEMP_SENSOR_SUPPORTED); the classic ESP32 has none and throws.
 */
#include "xsmc.h"
#include "xsHost.h"

#if ESP32
	#include "soc/soc_caps.h"
#endif

#if ESP32 && SOC_TEMP_SENSOR_SUPPORTED
#include "driver/temperature_sensor.h"

static temperature_sensor_handle_t gSensor = NULL;

void xs_chiptemp_read(xsMachine *the)
{
	float celsius;
	if (!gSensor) {
		temperature_sensor_config_t config = TEMPERATURE_SENSOR_CONFIG_DEFAULT(-10, 80);
		if (temperature_sensor_install(&config, &gSensor) != ESP_OK) {
			gSensor = NULL;
			xsUnknownError("temperature sensor: install failed");
		}
		if (temperature_sensor_enable(gSensor) != ESP_OK)
			xsUnknownError("temperature sensor: enable failed");
	}
	if (temperature_sensor_get_celsius(gSensor, &celsius) != ESP_OK)
		xsUnknownError("temperature sensor: read failed");
	xsmcSetNumber(xsResult, celsius);
}
#else
void xs_chiptemp_read(xsMachine *the)
{
	xsUnknownError("this chip has no supported internal temperature sensor");
}
#endif

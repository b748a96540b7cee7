/**
 * The sensor firmware's entry on a Moddable build (manifests/sensor.json): the
 * portable app (app.ts) over the Moddable platform adapter.
 */
import { boot } from './app.js';
import { moddablePlatform } from './platform/moddable.js';

boot(moddablePlatform());

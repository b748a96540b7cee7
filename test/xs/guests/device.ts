/** The device engine inside XS, its platform the Node host's; the RNG is the host's OS RNG (prelude). */
import { hostRandom } from './prelude.js';
import { serve } from '../../../hosts/xs/guest.js';
import { deviceMethods } from '../../../hosts/xs/device-guest.js';

serve(deviceMethods(hostRandom));

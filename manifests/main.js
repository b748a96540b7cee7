// The app's "main" module: starts the firmware under its source-tree name, so that
// its `./x.js` imports resolve in XS as they do in Node (MODDABLE.md §1).
import "devices/sensor/main";

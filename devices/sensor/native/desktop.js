// Frozen façade over desktop.c (lin/mac builds only).
function listen() @ "xs_desktop_listen";
function poll() @ "xs_desktop_poll";
function write(buffer) @ "xs_desktop_write";
function loadavg() @ "xs_desktop_loadavg";
export default Object.freeze({ listen, poll, write, loadavg });

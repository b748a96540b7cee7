// Frozen façade over restart.c.
function restart() @ "xs_iotkx_restart";
export default restart;

// Frozen façade over chiptemp.c.
function read() @ "xs_chiptemp_read";
export default Object.freeze({ read });

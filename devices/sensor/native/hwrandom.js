// Frozen façade over hwrandom.c (see there for when rfOff matters).
function fill(buffer, rfOff) @ "xs_hwrandom_fill";
export default Object.freeze({ fill });

// The function Realm runs in the benchmark, unchanged: bench/functions/index.js.
module.exports = require("../../functions/index.js");

-- bench/wrk_report.lua - makes wrk print its results as one JSON line
-- (after its usual text), for bench/run.sh and bench/invoke.py:
--   [WRK_METHOD=POST WRK_BODY='{}' WRK_PAUSE_MS=5] wrk -s bench/wrk_report.lua ...
-- WRK_METHOD and WRK_BODY set the request (a body is sent as application/json);
-- WRK_PAUSE_MS makes each connection wait that long before each request.
-- Every figure comes from wrk's own summary and latency histogram.
local method, body, pause = os.getenv("WRK_METHOD"), os.getenv("WRK_BODY"), os.getenv("WRK_PAUSE_MS")
if method then wrk.method = method end
if body then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
if pause and tonumber(pause) > 0 then
  delay = function() return tonumber(pause) end
end

done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"duration_s":%.6f,"requests":%d,"requests_per_s":%.2f,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    secs, summary.requests, summary.requests / secs, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end

-- bench/wrk_report.lua - makes wrk print its results as one JSON line
-- (after its usual text), for bench/run.sh: wrk -s bench/wrk_report.lua ...
-- Every figure comes from wrk's own summary and latency histogram.
done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"duration_s":%.6f,"requests":%d,"requests_per_s":%.2f,"bytes":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    secs, summary.requests, summary.requests / secs, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end

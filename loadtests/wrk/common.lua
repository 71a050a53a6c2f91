-- Shared by chat.lua and chat_stream.lua (loaded with dofile; see those files).
-- Environment: GATEWAY_KEY (Authorization bearer), GATEWAY_MODEL (the model/alias to ask for);
-- GATEWAY_BODY, when set, is the request body as it is (loadtests/inbound_bench.py: other wire formats).
local M = {}

function M.setup(stream)
  local key = os.getenv("GATEWAY_KEY") or "sk-bench"
  local model = os.getenv("GATEWAY_MODEL") or "bench"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
  local extra = stream and ',"stream":true' or ""
  wrk.body = os.getenv("GATEWAY_BODY") or ('{"model":"' .. model
    .. '","messages":[{"role":"user","content":"Say something short."}]' .. extra .. '}')
end

-- One machine-readable line for benchmark.py (latencies in microseconds).
function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end

return M

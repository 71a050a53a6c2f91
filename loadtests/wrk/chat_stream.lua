-- wrk -t1 -c50 -d10s --latency -s loadtests/wrk/chat_stream.lua http://127.0.0.1:8080/v1/chat/completions
-- Streamed chat completion (SSE); wrk counts a request when the chunked response is complete, so
-- latency here is the whole stream's duration. Env: GATEWAY_KEY, GATEWAY_MODEL.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")
common.setup(true)
done = common.done

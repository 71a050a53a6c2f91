-- wrk -t1 -c50 -d10s --latency -s loadtests/wrk/chat.lua http://127.0.0.1:8080/v1/chat/completions
-- Non-stream chat completion. Env: GATEWAY_KEY, GATEWAY_MODEL.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")
common.setup(false)
done = common.done

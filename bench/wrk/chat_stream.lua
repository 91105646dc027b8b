-- wrk script: streaming POST /v1/chat/completions ("stream": true, SSE reply).
--
--   wrk -t1 -c1 -d10s -s bench/wrk/chat_stream.lua http://127.0.0.1:PORT/v1/chat/completions -- MODEL KEY [USER]
--   (straight at the mock: http://127.0.0.1:NGINX_PORT/stream/v1/chat/completions)
--
-- The model, key and billed user come from the wrk args after `--` (MODEL KEY USER), else
-- from the environment (BENCH_MODEL, BENCH_KEY, BENCH_USER). Against the mock they are
-- irrelevant; through the gateway the model selects the provider instance and the master key
-- requires `user` (the user to bill), e.g. `mockstream:gpt-4o-mini`.
--
-- done() prints one machine-readable line for bench/report.py:
--   BENCH_WRK {"requests":…,"rps":…,"p50_us":…,"p99_us":…,"non_2xx":…,…}

BENCH_STREAM = true
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "chat.lua")

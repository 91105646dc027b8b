-- wrk script: non-streaming POST /v1/chat/completions.
--
--   wrk -t1 -c1 -d10s -s bench/wrk/chat.lua http://127.0.0.1:PORT/v1/chat/completions -- MODEL KEY [USER]
--
-- The model, key and billed user come from the wrk args after `--` (MODEL KEY USER), else
-- from the environment (BENCH_MODEL, BENCH_KEY, BENCH_USER). Against the mock they are
-- irrelevant; through the gateway the model selects the provider instance and the master key
-- requires `user` (the user to bill), e.g. `mock:gpt-4o-mini`.
--
-- done() prints one machine-readable line for bench/report.py:
--   BENCH_WRK {"requests":…,"rps":…,"p50_us":…,"p99_us":…,"non_2xx":…,…}

-- chat_stream.lua sets BENCH_STREAM before loading this file.
local STREAM = BENCH_STREAM == true

local function setting(args, index, env_name, default)
   local value = args and args[index]
   if value == nil or value == "" then value = os.getenv(env_name) end
   if value == nil or value == "" then value = default end
   return value
end

function init(args)
   local model = setting(args, 1, "BENCH_MODEL", "gpt-4o-mini")
   local key = setting(args, 2, "BENCH_KEY", "sk-bench")
   local user = setting(args, 3, "BENCH_USER", "bench-user")
   wrk.method = "POST"
   wrk.headers["Authorization"] = "Bearer " .. key
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Accept"] = STREAM and "text/event-stream" or "application/json"
   wrk.body = string.format(
      '{"model":"%s","stream":%s,"user":"%s","max_tokens":64,"temperature":0.2,'
         .. '"messages":[{"role":"system","content":"You are a concise assistant."},'
         .. '{"role":"user","content":"In one sentence: why do web services use load balancers?"}]}',
      model, STREAM and "true" or "false", user)
end

function done(summary, latency, requests)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   local n = summary.requests
   io.write(string.format(
      'BENCH_WRK {"script":"%s","requests":%d,"duration_us":%d,"rps":%.2f,'
         .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,'
         .. '"bytes":%d,"bytes_per_req":%.1f,"non_2xx":%d,"err_connect":%d,'
         .. '"err_read":%d,"err_write":%d,"err_timeout":%d}\n',
      STREAM and "chat_stream" or "chat", n, summary.duration, n / seconds,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max, summary.bytes, n > 0 and summary.bytes / n or 0,
      e.status, e.connect, e.read, e.write, e.timeout))
end

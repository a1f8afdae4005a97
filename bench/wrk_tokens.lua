-- wrk script: POST one hook body, each request with its own pre-minted bearer token.
--
--   wrk -t2 -c4 -d10s --latency -s bench/wrk_tokens.lua URL -- TOKENS_PREFIX BODY_FILE PATH [DELAY_MS]
--
-- Thread i reads TOKENS_PREFIX.i (one JWT per line, disjoint between threads) and sends the next
-- unused token with every request, so the service never sees a replayed jti. If a thread runs out
-- it wraps around and counts the reuse ("reused" in the output; those requests will be 401).
-- DELAY_MS > 0 makes every connection wait that long after each response (paced load, soak).
-- At the end one line "BENCHJSON {...}" carries the counts and latency percentiles (microseconds).

local counter = 0
local threads = {}

function setup(thread)
   thread:set("id", counter)
   table.insert(threads, thread)
   counter = counter + 1
end

function init(args)
   local prefix, body_file = args[1], args[2]
   path = args[3]
   delay_ms = tonumber(args[4] or "0") or 0
   tokens = {}
   for line in io.lines(prefix .. "." .. id) do
      if #line > 0 then tokens[#tokens + 1] = line end
   end
   local f = assert(io.open(body_file, "rb"))
   body = f:read("*a")
   f:close()
   idx, ok, non200, reused = 0, 0, 0, 0
   statuses = ""
   seen = {}
   if delay_ms > 0 then
      function delay()
         return delay_ms
      end
   end
end

function request()
   idx = idx + 1
   local n = #tokens
   if idx > n then reused = reused + 1 end
   local token = tokens[((idx - 1) % n) + 1]
   return wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. token,
   }, body)
end

function response(status, headers, resp_body)
   if status == 200 then
      ok = ok + 1
   else
      non200 = non200 + 1
      seen[status] = (seen[status] or 0) + 1
      local parts = {}
      for code, count in pairs(seen) do parts[#parts + 1] = '"' .. code .. '":' .. count end
      statuses = table.concat(parts, ",")
   end
end

function done(summary, latency, requests)
   local t_ok, t_non200, t_reused, t_sent = 0, 0, 0, 0
   local status_parts = {}
   for _, thread in ipairs(threads) do
      t_ok = t_ok + thread:get("ok")
      t_non200 = t_non200 + thread:get("non200")
      t_reused = t_reused + thread:get("reused")
      t_sent = t_sent + thread:get("idx")
      local s = thread:get("statuses")
      if s ~= nil and #s > 0 then status_parts[#status_parts + 1] = s end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"ok":%d,"non200":%d,"reused":%d,' ..
      '"sent":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d},"non200_by_thread":[%s]}\n',
      summary.requests, summary.duration, summary.bytes, t_ok, t_non200, t_reused, t_sent,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, #status_parts > 0 and ("{" .. table.concat(status_parts, "},{") .. "}") or ""))
end

-- wrk script: GET a uniformly random key of the bench's preloaded key space.
-- wrk -t2 -c64 -d10s -s bench/wrk/random-get.lua http://127.0.0.1:PORT -- [keys] [bucket]
local keys, bucket = 100000, "bench"

function init(args)
  keys = tonumber(args[1]) or keys
  bucket = args[2] or bucket
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  return wrk.format("GET", string.format("/v1/kv/%s/k%010d", bucket, math.random(0, keys - 1)))
end

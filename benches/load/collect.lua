-- POST /v1/tokens and append every token received to $TOKENS_OUT, for the consume runs.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
wrk.body = '{"sub":"user-1","scopes":["read:orders"],"ttl":"30m"}'
local out
init = function(args) out = io.open(os.getenv("TOKENS_OUT"), "a") end
response = function(status, headers, body)
  if status == 200 then
    local t = body:match('"token":"([^"]+)"')
    if t then out:write(t, "\n") end
  end
end

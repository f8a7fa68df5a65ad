-- POST /v1/tokens with the bench client's API key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
wrk.body = '{"sub":"user-1","scopes":["read:orders"]}'

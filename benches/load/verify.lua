-- POST /v1/verify of one token (no consume).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
wrk.body = '{"token":"' .. os.getenv("TOKEN") .. '"}'

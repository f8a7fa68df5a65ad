-- POST /oauth2/token, client_credentials, client_secret_basic ($OAUTH_BASIC
-- is the base64 of "client_id:secret").
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("OAUTH_BASIC")
wrk.body = "grant_type=client_credentials&scope=read%3Aorders"

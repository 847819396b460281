-- chat.jwt: tokens with the server's own secret and checks (HS256, sub, exp).
local chat = require "chat"
local support = require "support"

-- base64url without padding, to hand-make tokens the binding must refuse.
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local function b64url(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = (a << 16) | ((b or 0) << 8) | (c or 0)
        local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
        for j = 1, chars do
            local v = (n >> (18 - 6 * (j - 1))) & 63
            out[#out + 1] = alphabet:sub(v + 1, v + 1)
        end
    end
    return table.concat(out)
end

local function unb64url(s)
    local bits, nbits, out = 0, 0, {}
    for ch in s:gmatch(".") do
        bits = (bits << 6) | (alphabet:find(ch, 1, true) - 1)
        nbits = nbits + 6
        if nbits >= 8 then
            nbits = nbits - 8
            out[#out + 1] = string.char((bits >> nbits) & 255)
        end
    end
    return table.concat(out)
end

local function token(header, payload, secret)
    local input = b64url(chat.json.encode(header)) .. "." .. b64url(chat.json.encode(payload))
    local sig = secret and b64url(chat.crypto.hmac_sha256(secret, input)) or ""
    return input .. "." .. sig
end

local secret = os.getenv("CHAT_JWT_SECRET")

describe("chat.jwt", function()
    local uid = support.id()

    it("sign makes a token that verify turns back into the user id", function()
        local t = chat.jwt.sign(uid)
        assert.matches("^[%w_-]+%.[%w_-]+%.[%w_-]+$", t)
        assert.equal(uid, chat.jwt.verify(t))
    end)

    it("accepts a token made elsewhere with the same secret", function()
        assert.is_string(secret, "the specs run with CHAT_JWT_SECRET set")
        local t = token({ alg = "HS256", typ = "JWT" }, { sub = uid, exp = os.time() + 60 }, secret)
        assert.equal(uid, chat.jwt.verify(t))
    end)

    it("refuses an expired token, another secret, alg none and a changed payload", function()
        local bad = {
            token({ alg = "HS256" }, { sub = uid, exp = os.time() - 10 }, secret),
            token({ alg = "HS256" }, { sub = uid, exp = os.time() + 60 }, secret .. "x"),
            token({ alg = "none" }, { sub = uid, exp = os.time() + 60 }),
        }
        local good = chat.jwt.sign(uid)
        local h, _, s = good:match("^([^.]+)%.([^.]+)%.([^.]+)$")
        bad[#bad + 1] = h .. "." .. b64url(chat.json.encode({ sub = support.id(), exp = os.time() + 60 })) .. "." .. s
        bad[#bad + 1] = "not a token"
        for _, t in ipairs(bad) do
            local id, _, err = chat.jwt.verify(t)
            assert.is_nil(id, t)
            assert.equal("unauthorized", err)
        end
    end)

    it("a ttl sets how long the token lives (exp), 24 h by default", function()
        local function claims(t)
            return chat.json.decode(unb64url(t:match("^[^.]+%.([^.]+)")))
        end
        local now = os.time()
        local short = claims(chat.jwt.sign(uid, 90))
        assert.equal(uid, short.sub)
        assert.is_true(short.exp >= now + 90 and short.exp <= now + 91)
        local default = claims(chat.jwt.sign(uid))
        assert.is_true(default.exp >= now + 86400 and default.exp <= now + 86401)
    end)

    it("raises on misuse: a subject that is no user id, a ttl outside 1 s .. 1 year", function()
        assert.has_error(function() chat.jwt.sign("alice") end)
        assert.has_error(function() chat.jwt.sign(uid, 0) end)
        assert.has_error(function() chat.jwt.sign(uid, 400 * 86400) end)
    end)
end)

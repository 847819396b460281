-- chat.json: encode and decode the way events are converted, so a value that came in an
-- event goes out unchanged (arrays stay arrays, null stays null).
local chat = require "chat"
local json = chat.json

describe("chat.json", function()
    it("decodes objects, arrays, strings, numbers, booleans and null", function()
        local v = json.decode('{"s":"héllo","i":42,"f":1.5,"t":true,"n":null,"a":[1,"two"]}')
        assert.equal("héllo", v.s)
        assert.equal(42, v.i)
        assert.equal(math.type(42), math.type(v.i))
        assert.equal(1.5, v.f)
        assert.is_true(v.t)
        assert.equal(json.null, v.n)
        assert.equal(chat.null, v.n)
        assert.same({ 1, "two" }, { v.a[1], v.a[2] })
    end)

    it("round-trips arrays, empty ones included, and empty objects", function()
        local text = '{"a":[],"n":[1,null,3],"o":{}}'
        assert.equal(text, json.encode(json.decode(text)))
        assert.equal("[]", json.encode(json.decode("[]")))
    end)

    it("chat.array marks a table as an array, so an empty one encodes as []", function()
        assert.equal("[]", json.encode(chat.array()))
        assert.equal("[]", json.encode(chat.array({})))
        assert.equal("{}", json.encode({}))
        assert.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
    end)

    it("encodes objects with their keys sorted, compactly", function()
        assert.equal('{"a":1,"b":[true,false],"c":{"d":"x"}}',
            json.encode({ c = { d = "x" }, a = 1, b = { true, false } }))
    end)

    it("encodes scalars too", function()
        assert.equal('"x"', json.encode("x"))
        assert.equal("7", json.encode(7))
        assert.equal("null", json.encode(json.null))
    end)

    it("decode answers nil and a message for invalid JSON", function()
        local v, err = json.decode('{"a": [1, 2')
        assert.is_nil(v)
        assert.matches("invalid JSON at line 1", err)
    end)

    it("encode raises for what JSON cannot carry", function()
        assert.has_error(function() json.encode({ x = 0 / 0 }) end)
        assert.has_error(function() json.encode({ f = print }) end)
        assert.has_error(function() json.encode({ [1] = "a", [3] = "c" }) end) -- holes
        assert.has_error(function() json.encode({ [{}] = 1 }) end)
        assert.has_error(function() json.encode("\255\254") end) -- not UTF-8
    end)
end)

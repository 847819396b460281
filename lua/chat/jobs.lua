-- chat.jobs.handle: the part of chat.jobs written in Lua. A job's handler is the hook
-- "job/<name>": the server runs it (in a coroutine, under the usual budget, free to wait for
-- I/O until CHAT_JOBS_TIMEOUT_MS) for each job of that name, and specs drive it with
-- chat.dispatch("job/<name>", job) like any hook.
return function(chat)
    -- A run fails when the handler raises, returns chat.reject(...), returns false, or
    -- returns nil with a message (the usual `nil, err` of a binding passed on). The message
    -- goes with the job: its `error` field on the next attempt and on the dead-letter list.
    local function outcome(r, err)
        if r == false or (r == nil and err ~= nil) then
            return chat.reject("unavailable", tostring(err or "the handler returned false"))
        end
        if r == nil then return true end
        return r -- a chat.reject(...) stays one; anything else is a success
    end

    function chat.jobs.handle(name, fn)
        if type(name) ~= "string" or #name < 1 or #name > 64 or name:find("[^%w_%.%-:]") then
            error("bad argument #1 to 'handle' (a job name: 1 to 64 of letters, digits, _ . - :)", 2)
        end
        if type(fn) ~= "function" then
            error("bad argument #2 to 'handle' (a function expected)", 2)
        end
        if #chat.handlers("job/" .. name) > 0 then
            error("a handler for job '" .. name .. "' is declared already", 2)
        end
        chat.hook("job/" .. name, function(job) return outcome(fn(job)) end)
    end
end

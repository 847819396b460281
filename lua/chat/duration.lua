-- chat.duration: durations as people write and read them.
--   duration.parse("10m") -> 600      duration.text(600) -> "10 min"
local M = {}

local units = { s = 1, m = 60, h = 3600, d = 86400 }

-- Seconds in "30s", "10m", "2h" or "1d"; nil for anything else (and for zero).
function M.parse(text)
    local n, unit = tostring(text or ""):match("^(%d+)([smhd])$")
    local seconds = n and tonumber(n) * units[unit]
    return seconds and seconds > 0 and seconds or nil
end

-- "45 s", "10 min", "2 h", "3 d": the largest unit that divides the time, else the time
-- rounded up to a unit that keeps the number small. math.huge is "ever".
function M.text(seconds)
    if seconds == math.huge then return "ever" end
    local s = math.ceil(seconds)
    if s >= 86400 and s % 86400 == 0 then return ("%d d"):format(s // 86400) end
    if s >= 3600 and s % 3600 == 0 then return ("%d h"):format(s // 3600) end
    if s >= 60 and s % 60 == 0 then return ("%d min"):format(s // 60) end
    if s < 120 then return ("%d s"):format(s) end
    if s < 7200 then return ("%d min"):format(math.ceil(s / 60)) end
    if s < 172800 then return ("%d h"):format(math.ceil(s / 3600)) end
    return ("%d d"):format(math.ceil(s / 86400))
end

return M

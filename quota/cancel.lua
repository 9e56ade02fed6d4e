-- cancel.lua: remove a wait ticket. The queues that hold it drop it when
-- it reaches their head, since only :tickets says a ticket is live.
--
-- KEYS[1] <p>{tag}:tickets   KEYS[2] <p>{tag}:ticketinfo
-- ARGV[1] ticket

redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 0

-- Citus: the delegated write function plans its statements afresh on every
-- call (issue 27, L9 measured). On a Citus worker a statement on a
-- distributed table that PL/pgSQL has cached as a generic plan is pruned to
-- its shard at run time, and Citus then plans the shard's query and appends
-- that plan to the generic plan's list of local plans without finding the
-- one it made before (Citus 13.2, fast-path UPDATE and SELECT): the list, and
-- the backend's memory, grow by one plan per call (50 MB per statement after
-- a few thousand calls, measured with pg_log_backend_memory_contexts), and
-- each call pays the planning and the longer search. With custom plans the
-- ledger is a constant when the statement is planned and Citus plans the
-- query on the local shard directly: per call on a worker the head update
-- went from 0.91 to 0.25 ms, the tree update from 0.42 to 0.14, the fence
-- from 0.40 to 0.28, the head-move trigger's lookup from 0.30 to 0.09.
-- The setting holds for the call and what it calls (fence, triggers); plain
-- PostgreSQL never calls this function.
ALTER FUNCTION invario_append_delegated_v1(
    text, bigint, bytea, bigint, bytea,
    uuid[], text[], text[], timestamptz[], text[],
    bigint[], bytea[], bytea[], timestamptz[],
    smallint[], bigint[], bytea[],
    bigint, bytea, bytea,
    bigint, bytea, timestamptz
) SET plan_cache_mode = force_custom_plan;

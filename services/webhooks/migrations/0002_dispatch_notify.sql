-- Wake the dispatchers as soon as a transaction that made deliveries commits (NOTIFY is sent on
-- commit, once per transaction and payload), instead of their next poll a second later.
CREATE FUNCTION deliveries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('liaison_webhooks', '');
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_notify AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_notify();

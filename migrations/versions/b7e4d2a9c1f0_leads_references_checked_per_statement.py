"""leads: PostgreSQL checks a statement's references to batches and consent forms at once

A foreign key checks each inserted row on its own (a query per row, queued and run
after the row, even for a NULL reference): 5-7 µs of the server's CPU per stored
lead, a third of what COPY of the leads costs it (bench/storing.py), on cores the
ingest workers share. PostgreSQL 15 has no statement-level foreign key, so here the
two foreign keys of leads are replaced on PostgreSQL by triggers that give the same
guarantee: after each INSERT statement one query over the statement's new rows
(a transition table) checks and locks (FOR KEY SHARE, as the foreign key does) every
distinct (batch, seller) and consent form they refer to; an UPDATE that changes a
reference is checked row by row, as is a DELETE or key change of a batch or a form
version still referred to (NO ACTION, as before), and a TRUNCATE of either that
leaves leads behind. SQLite keeps its foreign keys (its own check costs little).

Revision ID: b7e4d2a9c1f0
Revises: 054479af09d5
Create Date: 2026-12-06 09:20:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b7e4d2a9c1f0'
down_revision = '054479af09d5'
branch_labels = None
depends_on = None

BATCH_KEY = 'fk_leads_batch_id_batches'
SCOPE_KEY = 'fk_leads_consent_scope_id_lead_form_versions'

_VIOLATION = "ERRCODE = 'foreign_key_violation', TABLE = 'leads', CONSTRAINT = '{name}'"

# The referencing side. A missing key is named as the foreign key names it. The locks
# are the foreign key's: a batch or form version being deleted meanwhile waits for this
# transaction, or this one finds it gone. A statement's rows nearly always name one
# batch (an upload's chunk, a real-time lead) and one form version or none: the
# bounds say so, and one look settles it; DISTINCT, for the other statements, costs
# ~20 µs even for a single row.
_INSERTED = f"""
CREATE FUNCTION leads_check_inserted_references() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    named record;
    missing record;
BEGIN
    SELECT min(batch_id) AS batch, max(batch_id) AS last_batch, min(seller_id) AS seller,
           max(seller_id) AS last_seller, min(consent_scope_id) AS scope,
           max(consent_scope_id) AS last_scope
    INTO named FROM new_leads;
    IF named.batch IS NULL THEN  -- no rows
        RETURN NULL;
    END IF;
    IF named.batch = named.last_batch AND named.seller = named.last_seller THEN
        PERFORM FROM batches WHERE id = named.batch AND seller_id = named.seller FOR KEY SHARE;
        IF NOT FOUND THEN
            SELECT named.batch AS batch_id, named.seller AS seller_id INTO missing;
        END IF;
    ELSE
        SELECT n.batch_id, n.seller_id INTO missing
        FROM (SELECT DISTINCT batch_id, seller_id FROM new_leads) AS n
        WHERE NOT EXISTS (SELECT FROM batches b WHERE b.id = n.batch_id
                          AND b.seller_id = n.seller_id FOR KEY SHARE)
        LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'insert or update on table "leads" violates foreign key constraint "{BATCH_KEY}"'
            USING DETAIL = format('Key (batch_id, seller_id)=(%s, %s) is not present in table "batches".',
                                  missing.batch_id, missing.seller_id),
            {_VIOLATION.format(name=BATCH_KEY)};
    END IF;
    IF named.scope IS NULL THEN
        RETURN NULL;
    ELSIF named.scope = named.last_scope THEN
        PERFORM FROM lead_form_versions WHERE id = named.scope FOR KEY SHARE;
        IF NOT FOUND THEN
            SELECT named.scope AS consent_scope_id INTO missing;
        END IF;
    ELSE
        SELECT n.consent_scope_id INTO missing
        FROM (SELECT DISTINCT consent_scope_id FROM new_leads
              WHERE consent_scope_id IS NOT NULL) AS n
        WHERE NOT EXISTS (SELECT FROM lead_form_versions v WHERE v.id = n.consent_scope_id
                          FOR KEY SHARE)
        LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'insert or update on table "leads" violates foreign key constraint "{SCOPE_KEY}"'
            USING DETAIL = format('Key (consent_scope_id)=(%s) is not present in table "lead_form_versions".',
                                  missing.consent_scope_id),
            {_VIOLATION.format(name=SCOPE_KEY)};
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER leads_inserted_references AFTER INSERT ON leads
    REFERENCING NEW TABLE AS new_leads
    FOR EACH STATEMENT EXECUTE FUNCTION leads_check_inserted_references();

CREATE FUNCTION leads_check_updated_references() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM batches WHERE id = NEW.batch_id AND seller_id = NEW.seller_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert or update on table "leads" violates foreign key constraint "{BATCH_KEY}"'
            USING DETAIL = format('Key (batch_id, seller_id)=(%s, %s) is not present in table "batches".',
                                  NEW.batch_id, NEW.seller_id),
            {_VIOLATION.format(name=BATCH_KEY)};
    END IF;
    IF NEW.consent_scope_id IS NOT NULL THEN
        PERFORM FROM lead_form_versions WHERE id = NEW.consent_scope_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'insert or update on table "leads" violates foreign key constraint "{SCOPE_KEY}"'
                USING DETAIL = format('Key (consent_scope_id)=(%s) is not present in table "lead_form_versions".',
                                      NEW.consent_scope_id),
                {_VIOLATION.format(name=SCOPE_KEY)};
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER leads_updated_references AFTER UPDATE OF batch_id, seller_id, consent_scope_id
    ON leads FOR EACH ROW
    WHEN (NEW.batch_id IS DISTINCT FROM OLD.batch_id OR NEW.seller_id IS DISTINCT FROM OLD.seller_id
          OR NEW.consent_scope_id IS DISTINCT FROM OLD.consent_scope_id)
    EXECUTE FUNCTION leads_check_updated_references();
"""

# The referenced side: NO ACTION, checked after the statement as the foreign key was.
# Under REPEATABLE READ a lead committed after this transaction's snapshot would be
# out of sight (the foreign key looks with a newer snapshot, which PL/pgSQL cannot):
# there the change is refused outright. The app runs READ COMMITTED; SERIALIZABLE
# sees the conflict itself.
_REFERENCED = f"""
CREATE FUNCTION leads_check_referenced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    referred boolean;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF TG_TABLE_NAME = 'batches' THEN
            referred := EXISTS (SELECT FROM leads);
        ELSE
            referred := EXISTS (SELECT FROM leads WHERE consent_scope_id IS NOT NULL);
        END IF;
        IF referred THEN
            RAISE EXCEPTION 'cannot truncate a table referenced in a foreign key constraint'
                USING DETAIL = format('Table "leads" references "%s".', TG_TABLE_NAME),
                ERRCODE = 'feature_not_supported';
        END IF;
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'batches' THEN
        IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seller_id = OLD.seller_id
                OR EXISTS (SELECT FROM batches WHERE id = OLD.id AND seller_id = OLD.seller_id) THEN
            RETURN NULL;
        END IF;
    ELSIF TG_OP = 'UPDATE' AND NEW.id = OLD.id
            OR EXISTS (SELECT FROM lead_form_versions WHERE id = OLD.id) THEN
        RETURN NULL;
    END IF;
    IF current_setting('transaction_isolation') = 'repeatable read' THEN
        RAISE EXCEPTION 'a key of "%" that leads may refer to changes only under READ COMMITTED or SERIALIZABLE', TG_TABLE_NAME
            USING ERRCODE = 'serialization_failure';
    END IF;
    IF TG_TABLE_NAME = 'batches' THEN
        PERFORM FROM leads WHERE batch_id = OLD.id AND seller_id = OLD.seller_id LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'update or delete on table "batches" violates foreign key constraint "{BATCH_KEY}" on table "leads"'
                USING DETAIL = format('Key (id, seller_id)=(%s, %s) is still referenced from table "leads".',
                                      OLD.id, OLD.seller_id),
                {_VIOLATION.format(name=BATCH_KEY)};
        END IF;
    ELSE
        PERFORM FROM leads WHERE consent_scope_id = OLD.id LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'update or delete on table "lead_form_versions" violates foreign key constraint "{SCOPE_KEY}" on table "leads"'
                USING DETAIL = format('Key (id)=(%s) is still referenced from table "leads".', OLD.id),
                {_VIOLATION.format(name=SCOPE_KEY)};
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER leads_referenced AFTER DELETE OR UPDATE OF id, seller_id ON batches
    FOR EACH ROW EXECUTE FUNCTION leads_check_referenced();
CREATE TRIGGER leads_referenced_truncate AFTER TRUNCATE ON batches
    FOR EACH STATEMENT EXECUTE FUNCTION leads_check_referenced();
CREATE TRIGGER leads_referenced AFTER DELETE OR UPDATE OF id ON lead_form_versions
    FOR EACH ROW EXECUTE FUNCTION leads_check_referenced();
CREATE TRIGGER leads_referenced_truncate AFTER TRUNCATE ON lead_form_versions
    FOR EACH STATEMENT EXECUTE FUNCTION leads_check_referenced();
"""


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_constraint(BATCH_KEY, 'leads', type_='foreignkey')
    op.drop_constraint(SCOPE_KEY, 'leads', type_='foreignkey')
    op.execute(_INSERTED + _REFERENCED)


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP TRIGGER leads_referenced_truncate ON lead_form_versions;"
        "DROP TRIGGER leads_referenced ON lead_form_versions;"
        "DROP TRIGGER leads_referenced_truncate ON batches;"
        "DROP TRIGGER leads_referenced ON batches;"
        "DROP TRIGGER leads_updated_references ON leads;"
        "DROP TRIGGER leads_inserted_references ON leads;"
        "DROP FUNCTION leads_check_referenced(), leads_check_updated_references(),"
        " leads_check_inserted_references();")
    op.create_foreign_key(BATCH_KEY, 'leads', 'batches', ['batch_id', 'seller_id'],
                          ['id', 'seller_id'])
    op.create_foreign_key(SCOPE_KEY, 'leads', 'lead_form_versions', ['consent_scope_id'], ['id'])

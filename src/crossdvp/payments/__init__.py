"""The payment ledger: a permissioned multi-currency deposit-account service (the Kinexys role).

Run it with `crossdvp payments serve --database-url URL` (SQLite file by default, PostgreSQL with
`postgresql+psycopg://...`); talk to it with `crossdvp.payments.client.PaymentsClient`.

API (under /v1, `Authorization: Bearer <key>`, problem+json errors, `Idempotency-Key` on writes):

    GET  /info                                 ledger id, network `payments:<ledger_id>`, time (public)
    POST /participants | /credentials | /accounts | /cash-in | /cash-out            (admin)
    POST /accounts/{id}/freeze                                                        (admin)
    GET  /accounts, /accounts/{id}, /accounts/{id}/statement, /participants/{id}      (admin, participant)
    POST /payments                              immediate payment                     (participant, admin)
    POST /holds, /holds/batch                   lock a settlement leg                 (participant, admin)
    GET  /holds, /holds/{id}                                                          (any role)
    POST /holds/{id}/reclaim                    after deadline + grace                (the payer, admin)
    GET  /events?after=&limit=&wait_s=, /events/stream (SSE)   feed + watermark     (oracle, admin)
    PUT|DELETE /don-configs/{don_id}/{version}, GET /don-configs                      (admin | any)
    POST /reports, GET /reports/{workflow_execution_id}        signed Keystone reports (any role)

Modules: `accounts` and `holds` (operations), `journal` (hash-chained double entry), `reports`
(verify + apply), `feed` (events and the time watermark), `store` (engines, migrations, serialized
transactions), `api`/`routes`/`settlement_routes` (HTTP), `client`, `cli`, `bench`.
"""

"""The CPU-bound half of ingest, run on every core: validate, normalise, encrypt, hash.

Validation (phonenumbers, email-validator) and encryption cost tens of microseconds a
row, far more than parsing or storing, so chunks of rows go to worker processes and
come back in order; the database work stays in the calling process. With one worker
(or inside a daemonic process, such as a Celery prefork child, which may not start
processes of its own) the same code runs in-process.
"""
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Optional

from app.services.crypto import ContactVault
from app.services.ingest.fields import resolve_region
from app.services.ingest.validate import NormalisedLead, RowContext, validate_row


@dataclass(slots=True)
class ValidatedRow:
    row_number: int
    accepted: bool
    code: Optional[str]
    message: Optional[str]
    lead: Optional[NormalisedLead]
    raw_enc: Optional[bytes]  # rejected rows only: the original cells, encrypted
    first_name_enc: Optional[bytes] = None
    last_name_enc: Optional[bytes] = None
    email_enc: Optional[bytes] = None
    phone_enc: Optional[bytes] = None
    ip_enc: Optional[bytes] = None
    email_hash: Optional[bytes] = None
    phone_hash: Optional[bytes] = None


def validate_chunk(rows: list[tuple[int, dict, list]], ctx: RowContext,
                   vault: ContactVault) -> list[ValidatedRow]:
    out = []
    encrypt = vault.encrypt
    for number, values, raw in rows:
        result = validate_row(values, ctx)
        lead = result.lead
        if lead is None:
            out.append(ValidatedRow(number, False, result.code, result.message, None,
                                    encrypt(json.dumps(raw, ensure_ascii=False))))
            continue
        out.append(ValidatedRow(
            number, True, None, None, lead, None,
            first_name_enc=encrypt(lead.first_name), last_name_enc=encrypt(lead.last_name),
            email_enc=encrypt(lead.email), phone_enc=encrypt(lead.phone), ip_enc=encrypt(lead.ip),
            email_hash=vault.dedupe_hash("email", lead.email) if lead.email else None,
            phone_hash=vault.dedupe_hash("phone", lead.phone) if lead.phone else None,
        ))
    return out


_worker_vault: Optional[ContactVault] = None


def _init_worker(master_key: str) -> None:
    global _worker_vault
    _worker_vault = ContactVault(master_key)
    resolve_region("Москва", None, "RU")  # builds the region index before the first chunk


def _validate_in_worker(rows: list, ctx: RowContext) -> list[ValidatedRow]:
    return validate_chunk(rows, ctx, _worker_vault)


class InProcess:
    def __init__(self, master_key: str):
        self._vault = ContactVault(master_key)

    def map_chunks(self, chunks: Iterable[list], ctx: RowContext
                   ) -> Iterator[tuple[list, list[ValidatedRow]]]:
        for chunk in chunks:
            yield chunk, validate_chunk(chunk, ctx, self._vault)


class WorkerPool:
    """A process pool kept for the life of the process (workers import slowly)."""

    def __init__(self, master_key: str, processes: int):
        self.processes = processes
        self._executor = ProcessPoolExecutor(
            max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(master_key,))

    def map_chunks(self, chunks: Iterable[list], ctx: RowContext
                   ) -> Iterator[tuple[list, list[ValidatedRow]]]:
        """(chunk, its validated rows) in file order."""
        # Keep a few chunks in flight, not the whole file: memory stays flat.
        in_flight = []
        for chunk in chunks:
            in_flight.append((chunk, self._executor.submit(_validate_in_worker, chunk, ctx)))
            if len(in_flight) > self.processes * 2:
                chunk, future = in_flight.pop(0)
                yield chunk, future.result()
        for chunk, future in in_flight:
            yield chunk, future.result()


_pools: dict[tuple[str, int], WorkerPool] = {}


def pool_for(config: Mapping) -> InProcess | WorkerPool:
    processes = int(config.get("INGEST_WORKERS") or os.cpu_count() or 1)
    key = config["CONTACT_ENCRYPTION_KEY"]
    if processes <= 1 or multiprocessing.current_process().daemon:
        return InProcess(key)
    if (key, processes) not in _pools:
        _pools[(key, processes)] = WorkerPool(key, processes)
    return _pools[(key, processes)]

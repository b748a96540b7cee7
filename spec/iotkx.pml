/*
 * iotkx/1 key exchange (PROTOCOL.md §5) as implemented, with a Dolev-Yao relay.
 *
 * One device D, one receiver R, the KeyExchange contract, and an attacker A that IS the relay:
 * every device⇄chain and device⇄relay message passes through it. Cryptography is symbolic:
 *   K            a symbol 1..MAXK drawn fresh by D per epoch; KA is the attacker's own key.
 *   wrap(E, K)   opaque unless the attacker holds e: it holds e only for EA, its own key pair.
 *   proof(K, e)  = keccak("iotkx/1/confirm" || K || channelId || e): computable only knowing K;
 *                the commitment is keccak(proof): equal iff (K, e) equal.
 *   sig_X(m)     only X can make it; anyone can verify it and replay it.
 *   envelope     AEAD under dataKey(K) with AAD (device, epoch, seq): opens only under the same K
 *                and the same (epoch, seq) header.
 * The whole system is one process whose loop picks any enabled atomic action of any party, so
 * every interleaving of actors, restarts, block advances and attacker moves is explored.
 * Each action cites the code it models (docs/model/README.md has the table).
 *
 * Switches (-D): ONLY=n checks only property n (0 = none); MUT_* remove one check (mutants);
 * REACH=n asserts that milestone n is never reached (a sanity run expected to FAIL, proving the
 * milestone reachable); LIMIT_CHAIN asserts a property the protocol does NOT give (expected FAIL).
 * ROT: R rotates its encryption key once (version 2) and A may then learn the retired e of version
 * 1 (P6). LOWNONCE: the device's re-signatures at an own nonce below or between (relay count hints
 * read both ways, §5.3). LIVE: the relay lies about nonces and withholds transactions until it turns
 * honest for good; at quiescence the device must be active (LIVE_active_after_honesty). NOREVOKE:
 * no revocation. MAXR, MAXRESTART, MAXE override the bounds (the ROT and LIVE runs use smaller ones).
 */

#ifndef MAXE
#define MAXE 2            /* epochs 1..MAXE (rotation: at least two) */
#endif
#ifdef LIVE
#define MAXN   (MAXE + 4) /* LIVE: room for 2 lied-about nonces and the honest re-signatures after them */
#else
#define MAXN   (MAXE + 1) /* device transaction nonces 0..MAXN-1 (one re-sign beyond one per epoch) */
#endif
#define KA     7          /* the attacker's own key symbol */
#define DEVKEYS 126       /* bits 1..6: symbols D may draw */
#define ER     1          /* the receiver's encryption key, version 1 (pinned R signed its record) */
#define EA     2          /* the attacker's encryption key (it holds e_A) */
#define ER2    3          /* the receiver's encryption key, version 2 (after R rotates E, §5.1) */
#define VER(w) ((w) == ER -> 1 : ((w) == ER2 -> 2 : 0)) /* version an offer wrapped for w names (A's record: none on chain) */
#define MAXLOW 1          /* device re-signatures at a nonce it signed before (relay count hints), bounded */
#ifndef MAXR
#define MAXR   2          /* readings D seals in all */
#endif
#define SEQ_BLOCK 2       /* seq values reserved per high-water-mark write (engine.ts SEQ_BLOCK, smaller) */
#define MAXTX  6          /* distinct D transactions the relay can hold */
#ifndef MAXRESTART
#define MAXRESTART 2      /* device power cuts */
#endif

/* contract channel state (§4) */
#define NONE 0
#define OFFERED 1
#define ACCEPTED 2
#define REJECTED 3
/* receiver per-offer row (hosts/receiver/exchange.ts) */
#define R_NONE 0
#define R_SEEN 1
#define R_KEY 2
#define R_ASENT 3
#define R_ACC 4
#define R_RPEND 5
#define R_RSENT 6
#define R_REJ 7
#define R_EXP 8
#define R_SUP 9
/* receiver's view of the device (devices.status) */
#define RD_UNKNOWN 0
#define RD_ENR 1
#define RD_REV 2
/* receiver transaction kinds */
#define TX_ACCEPT 1
#define TX_REJECT 2

#ifdef ONLY
#define CHECK(n) (ONLY == n)
#else
#define CHECK(n) 1
#endif
#define BIT(x) (1 << (x))

/* ---------------------------------------------------------------- chain: KeyExchange channel (D, R) */
#ifdef LIVE
bit  cEnrolled = 1;       /* LIVE: enrolled before the device starts (liveness needs an honest operator too) */
#else
bit  cEnrolled;           /* enrolled flag */
#endif
bit  cSticky;             /* revoked once: only R may enroll again */
byte nEnroll, nRevoke;    /* operator/receiver actions, bounded */
byte cEpoch;              /* stored epoch */
byte cState;              /* NONE/OFFERED/ACCEPTED/REJECTED */
byte cK;                  /* commitment = keccak(proof(cK, cEpoch)) */
bit  cExpired;            /* block.number > offeredAt + offerTtlBlocks */
byte cNonce;              /* D's account nonce */
byte cVer = 1;            /* R's current key version on chain (offerKey checks it: UnknownKeyVersion) */
byte evK[MAXE + 1];       /* KeyOffered(epoch e) log: wrapped K ... */
byte evW[MAXE + 1];       /* ... and the key it is wrapped for */
bit  accEnrolled[MAXE + 1]; /* ghost: the acceptance of e took effect while D was enrolled */
bit  chainAcc[MAXE + 1];  /* ghost: acceptKey for e succeeded */

/* ---------------------------------------------------------------- receiver (all persisted) */
byte rScan;               /* last epoch whose KeyOffered log was scanned */
byte rSt[MAXE + 1];       /* row state per epoch */
byte rK[MAXE + 1];        /* stored K per epoch (0 = none) */
byte rDev;                /* devices.status from Enrolled/Revoked logs */
byte rSeen[MAXE + 1];     /* seen seq set per epoch (bitmask) */
byte rTxKind, rTxE, rTxK, rTxRes; /* the one in-flight accept/reject tx; Res 0 pending, 1 ok, 2 reverted */
byte rSigned[MAXE + 1];   /* public: R signed KeyAcceptance(D, R, e, proof(rSigned[e], e)) */
#ifdef MUT_RECV_K_LATE
bit  rKDirty[MAXE + 1];   /* mutant: K held only in memory until after the acceptance is sent */
byte nRRestart;
#endif

/* ---------------------------------------------------------------- device: persisted (lib/device/records.ts) */
byte dLastOff;            /* chan.lastOffered */
byte dNextNonce;          /* chan.nextNonce */
bit  dPend; byte dPE, dPK, dPN; bit dPSigned; byte dPW; /* chan.pending {epoch, K, nonce, raw (wrapped for dPW)} */
byte dAE, dAK;            /* chan.active {epoch, K} */
bit  dRevoked, dRot;      /* chan.revoked, chan.rotateNow */
byte dRkey;               /* rkey: the verified receiver encryption key (ER, then ER2; never lower) */
byte dSupK;               /* chan.pending.superseded: the K this epoch had before a key version change */
byte dSeqE, dSeqHwm;      /* seq record {epoch, hwm} */
/* device: volatile (lost on a power cut) */
bit  dBcast;              /* lastBroadcastAt set this boot */
byte dSeqNext, dSeqNextE; /* seqNext cache and its epoch */
byte nRestart;
byte kgen;                /* last K symbol drawn */
byte nLow;                /* re-signatures at an already used nonce so far (bounded by MAXLOW) */
byte ln;                  /* scratch: the nonce of a re-signature (0 between steps) */
#ifdef MUT_PENDING_LATE
bit  dPVol;               /* mutant: pending, lastOffered and nextNonce only in memory */
byte dLastOffSaved, dNextNonceSaved;
#endif

/* ---------------------------------------------------------------- attacker = relay */
byte attK = BIT(KA);      /* K symbols it knows */
bit  leaked;              /* it learned e of version 1, retired by R's rotation (a lost backup, say) */
byte txN[MAXTX], txE[MAXTX], txK[MAXTX], txW[MAXTX]; byte nTx; /* D's signed txs it has seen */
bit  txDropped[MAXTX];    /* LIVE: the relay threw tx i away (the chain gets it only if D sends it again) */
bit  honest;              /* LIVE: the relay answers honestly from now on */
byte nLie;                /* LIVE: re-signatures the relay's "nonce spent" lies caused */
/* envelopes: the relay holds every reading D sealed: rid i = (ridE, ridS, ridK) */
byte ridE[MAXR + 1], ridS[MAXR + 1], ridK[MAXR + 1]; byte nRid;
bit  ridAcc[MAXR + 1];    /* ghost: the receiver accepted reading i */

/* ---------------------------------------------------------------- ghosts for no-reuse (P4) */
byte epochSentK[(MAXE + 1) * 4];    /* the K of the offers of epoch e wrapped for key w that left the device: [e*4 + w] */
/* ghosts for P1 and P6 */
byte wrapER;                        /* Ks that left the device wrapped for ER (version 1): disclosed if e1 leaks */
byte sealK;                         /* Ks the device activated (sealed under) */
byte accER;                         /* ... of those, the ones whose accepted offer was wrapped for ER */
byte seqUsed[MAXE + 1];             /* seqs sealed per epoch */
bit  restartedPending;              /* ghost for REACH 5 */

/* named verdicts: pan prints the name of the one violated; each is reset to 0 right after its
   assert, so they never distinguish states (hidden variables would forbid breadth-first search) */
byte P1_attacker_never_learns_K;
byte P2_device_activates_only_receiver_accepted_epoch;
byte P3_receiver_accepts_only_enrolled_device;
byte P4_no_epoch_nonce_or_seq_reuse;
byte P5_reading_accepted_at_most_once;
byte P6_attacker_never_learns_K_sealed_under;
byte LIVE_active_after_honesty;
byte REACHED_milestone;
byte LIMIT_device_activates_only_chain_accepted;
byte hi;

/* ================================================================ properties */

/* What leaves the device: one K per (epoch, receiver key) (fee bumps and re-signatures at other
   nonces keep it; §5.3: a key version change draws a fresh K, so several nonces and two keys may
   carry offers of one epoch, and a nonce may carry offers of two: at most one of them is mined). */
inline checkP4tx(e, k, w) {
  P4_no_epoch_nonce_or_seq_reuse = (!CHECK(4) || epochSentK[e * 4 + w] == 0 || epochSentK[e * 4 + w] == k);
  assert(P4_no_epoch_nonce_or_seq_reuse); P4_no_epoch_nonce_or_seq_reuse = 0;
  epochSentK[e * 4 + w] = k;
#ifdef ROT
  if :: w == ER -> wrapER = wrapER | BIT(k) :: else -> skip fi
#endif
}

/* P1: A knows no K of D but what a lost key discloses (the Ks wrapped for version 1, once e1 leaked).
   P6: A never knows a K that D seals under, unless the offer accepted with it was wrapped for the
   leaked key (§5.6: losing e of version v discloses the epochs offered under v, and only those). */
inline checkKnowledge() {
  P1_attacker_never_learns_K = (!CHECK(1) || (attK & DEVKEYS & ~(leaked -> wrapER : 0)) == 0);
  assert(P1_attacker_never_learns_K); P1_attacker_never_learns_K = 0;
  P6_attacker_never_learns_K_sealed_under = (!CHECK(6) || (attK & sealK & ~(leaked -> accER : 0)) == 0);
  assert(P6_attacker_never_learns_K_sealed_under); P6_attacker_never_learns_K_sealed_under = 0
}

inline reach(n) {
#ifdef REACH
  REACHED_milestone = (REACH != n);
  assert(REACHED_milestone); REACHED_milestone = 0
#else
  skip
#endif
}

/* ================================================================ attacker knowledge */

/* The relay receives a raw tx of D (engine.ts broadcast): it keeps it for replay and learns
   K if the wrap is for a key it can open. */
inline relayGetsTx(n, e, k, w) {
  hi = 0;
  do
  :: hi < nTx && (txN[hi] != n || txE[hi] != e || txK[hi] != k || txW[hi] != w) -> hi++
  :: hi < nTx && txN[hi] == n && txE[hi] == e && txK[hi] == k && txW[hi] == w -> txDropped[hi] = 0; break /* delivered again */
  :: hi == nTx -> assert(nTx < MAXTX); txN[nTx] = n; txE[nTx] = e; txK[nTx] = k; txW[nTx] = w; nTx++; break
  od;
  if
  :: w == EA || (w == ER && leaked) -> attK = attK | BIT(k); printf("A   opens wrap(E%d, K%d) with an e it holds: learns K%d\n", w, k, k)
  :: else -> skip
  fi;
  checkKnowledge();
  hi = 0
}

/* A learns e of version 1 after R retired it: it opens every wrap for ER it holds. */
inline leakRetired() {
  leaked = 1; printf("A   learns the retired e of version 1\n");
  hi = 0;
  do
  :: hi < nTx && txW[hi] == ER -> attK = attK | BIT(txK[hi]); printf("A   opens wrap(E1, K%d): learns K%d\n", txK[hi], txK[hi]); hi++
  :: hi < nTx && txW[hi] != ER -> hi++
  :: hi == nTx -> break
  od;
  checkKnowledge();
  hi = 0
}

/* ================================================================ chain */

/* KeyExchange.offerKey executed for D's tx i (the nonce is consumed even if it reverts). */
inline execOffer(i) {
  printf("A   submits D's tx nonce %d: offerKey(epoch %d, wrap(E%d, K%d))\n", txN[i], txE[i], txW[i], txK[i]);
  cNonce++;
  if
  :: cEnrolled && txE[i] == cEpoch + 1 && VER(txW[i]) == cVer ->
       cEpoch = txE[i]; cState = OFFERED; cK = txK[i]; cExpired = 0; evK[cEpoch] = txK[i]; evW[cEpoch] = txW[i];
       printf("CH  KeyOffered epoch %d\n", cEpoch)
  :: else -> printf("CH  offerKey reverts\n") /* NotEnrolled / UnknownKeyVersion / BadEpoch */
  fi
}

inline clearRTx() { rTxKind = 0; rTxE = 0; rTxK = 0; rTxRes = 0 }

/* KeyExchange.acceptKey / rejectKey executed for R's in-flight tx. */
inline execRTx() {
  if
  :: rTxKind == TX_ACCEPT ->
       if
#ifdef MUT_CONTRACT_NO_ENROL
       :: cState == OFFERED && rTxE == cEpoch && !cExpired && rTxK == cK ->
#else
       :: cEnrolled && cState == OFFERED && rTxE == cEpoch && !cExpired && rTxK == cK ->
#endif
            cState = ACCEPTED; chainAcc[cEpoch] = 1; accEnrolled[cEpoch] = cEnrolled; rTxRes = 1;
            printf("CH  KeyAccepted epoch %d (enrolled %d)\n", cEpoch, cEnrolled);
            reach(3);
            if :: nEnroll == 2 -> reach(6) :: else -> skip fi;
            if :: cEpoch > 1 && rSt[cEpoch - 1] == R_EXP -> reach(7) :: else -> skip fi
       :: else -> rTxRes = 2; printf("CH  acceptKey(epoch %d) reverts\n", rTxE) /* NotEnrolled / NotOffered / BadEpoch / OfferExpired / BadProof */
       fi
  :: rTxKind == TX_REJECT ->
       if
       :: cState == OFFERED && rTxE == cEpoch -> cState = REJECTED; rTxRes = 1; printf("CH  KeyRejected epoch %d\n", cEpoch); reach(4)
       :: else -> rTxRes = 2
       fi
  fi;
  /* a receipt nobody waits for any more (the row moved on) is dropped */
  if
  :: rSt[rTxE] != R_ASENT && rSt[rTxE] != R_RSENT -> clearRTx()
  :: else -> skip
  fi
}

/* ================================================================ receiver */

inline finishAccepted(e) {
  rSt[e] = R_ACC;
  printf("R   row epoch %d accepted\n", e);
  P3_receiver_accepts_only_enrolled_device = (!CHECK(3) || (chainAcc[e] && accEnrolled[e] && evK[e] == epochSentK[e * 4 + evW[e]]));
  assert(P3_receiver_accepts_only_enrolled_device); P3_receiver_accepts_only_enrolled_device = 0
}

/* Exchange.onSeen: unwrap, recompute proof, check commitment, check enrolment, persist K. */
inline onSeen(e) {
  if
  :: rSt[e] == R_SEEN && evW[e] != ER && evW[e] != ER2 -> rSt[e] = R_RPEND /* reason 1: cannot unwrap */
#ifndef MUT_RECV_NO_ENROL
  :: rSt[e] == R_SEEN && (evW[e] == ER || evW[e] == ER2) && !cEnrolled -> rSt[e] = R_RPEND /* reason 3 */
  :: rSt[e] == R_SEEN && (evW[e] == ER || evW[e] == ER2) && cEnrolled ->
#else
  :: rSt[e] == R_SEEN && (evW[e] == ER || evW[e] == ER2) ->
#endif
       rK[e] = evK[e]; rSt[e] = R_KEY; printf("R   stores K%d for epoch %d\n", rK[e], e)
#ifdef MUT_RECV_K_LATE
       ; rKDirty[e] = 1
#endif
  fi
}

/* Exchange.onKeyStored (settle + accept): decide from the trusted node's channel(). */
inline onKeyStored(e) {
  if
  :: rSt[e] == R_KEY && cEpoch > e -> rSt[e] = R_SUP
  :: rSt[e] == R_KEY && cEpoch == e && cState == ACCEPTED -> finishAccepted(e)
  :: rSt[e] == R_KEY && cEpoch == e && cState == REJECTED -> rSt[e] = R_REJ
#ifndef MUT_RECV_NO_ENROL
  :: rSt[e] == R_KEY && cEpoch == e && cState == OFFERED && !cEnrolled -> rSt[e] = R_RPEND
#define RCV_ENROLLED cEnrolled
#else
#define RCV_ENROLLED 1
#endif
  /* expired, or too little of the TTL left (minRemainingBlocks): let it expire */
#ifndef LIVE
  :: rSt[e] == R_KEY && cEpoch == e && cState == OFFERED && RCV_ENROLLED -> rSt[e] = R_EXP
#endif
  :: rSt[e] == R_KEY && cEpoch == e && cState == OFFERED && RCV_ENROLLED && !cExpired && rTxKind == 0 ->
       /* sign KeyAcceptance(D, R, e, proof(K, e)) with the stored K; persist the tx; broadcast */
       printf("R   signs KeyAcceptance(epoch %d, proof(K%d)) and sends acceptKey\n", e, rK[e]);
       rSigned[e] = rK[e]; rTxKind = TX_ACCEPT; rTxE = e; rTxK = rK[e]; rTxRes = 0; rSt[e] = R_ASENT
  fi
}

/* Exchange.onRejectPending */
inline onRejectPending(e) {
  if
  :: rSt[e] == R_RPEND && cEpoch == e && cState == ACCEPTED -> rK[e] = 0; finishAccepted(e)
  :: rSt[e] == R_RPEND && (cEpoch != e || (cState != OFFERED && cState != ACCEPTED)) -> rK[e] = 0; rSt[e] = R_REJ
  :: rSt[e] == R_RPEND && cEpoch == e && cState == OFFERED && rTxKind == 0 ->
       rTxKind = TX_REJECT; rTxE = e; rTxK = 0; rTxRes = 0; rSt[e] = R_RSENT
  fi
}

#define HAS_RECEIPT(e) (rTxKind != 0 && rTxE == e && rTxRes != 0)

/* Exchange.onSent: the receipt decides; without one, the chain's view. */
inline onSent(e) {
  if
  :: rSt[e] == R_ASENT && HAS_RECEIPT(e) && rTxRes == 1 -> clearRTx(); finishAccepted(e)
  :: rSt[e] == R_ASENT && HAS_RECEIPT(e) && rTxRes == 2 -> clearRTx(); rSt[e] = R_KEY
  :: rSt[e] == R_ASENT && !HAS_RECEIPT(e) && cEpoch == e && cState == ACCEPTED -> finishAccepted(e)
  :: rSt[e] == R_ASENT && !HAS_RECEIPT(e) && cEpoch == e && cState == REJECTED -> rSt[e] = R_REJ
  :: rSt[e] == R_ASENT && !HAS_RECEIPT(e) && (cEpoch != e || cState == NONE) -> rSt[e] = R_KEY
  :: rSt[e] == R_ASENT && !HAS_RECEIPT(e) && cEpoch == e && cState == OFFERED && cExpired -> rSt[e] = R_EXP
  :: rSt[e] == R_RSENT && HAS_RECEIPT(e) && rTxRes == 1 -> clearRTx(); rSt[e] = R_REJ
  :: rSt[e] == R_RSENT && HAS_RECEIPT(e) && rTxRes == 2 -> clearRTx(); rSt[e] = R_RPEND
  :: rSt[e] == R_RSENT && !HAS_RECEIPT(e) && cEpoch == e && cState == REJECTED -> rSt[e] = R_REJ
  :: rSt[e] == R_RSENT && !HAS_RECEIPT(e) && (cEpoch != e || cState != OFFERED) && !(cEpoch == e && cState == REJECTED) -> rSt[e] = R_RPEND
  fi
}

/* Ingest.ingest: an envelope (header he, hs) sealed under k for (se, ss), reading rid. */
inline ingest(he, hs, k, se, ss, rid) {
  if
  :: rDev != RD_REV && rSt[he] == R_ACC && rK[he] != 0 && k == rK[he] && se == he && ss == hs ->
       /* authentic; now the seen-seq check (seqwindow.ts classifySeq) */
       if
#ifndef MUT_NO_SEEN
       :: (rSeen[he] & BIT(hs)) != 0 -> skip /* replay */
       :: (rSeen[he] & BIT(hs)) == 0 ->
#else
       :: true ->
#endif
            printf("R   accepts reading %d (epoch %d, seq %d)\n", rid, he, hs);
            rSeen[he] = rSeen[he] | BIT(hs);
            P5_reading_accepted_at_most_once = (!CHECK(5) ||
              (rid != 0 && !ridAcc[rid] && ridE[rid] == he && ridS[rid] == hs && ridK[rid] == k));
            assert(P5_reading_accepted_at_most_once); P5_reading_accepted_at_most_once = 0;
            ridAcc[rid] = 1;
            if
            :: he == MAXE -> reach(2)
            :: else -> skip
            fi
       fi
  :: else -> skip /* refused: unknown epoch, not accepted yet (parked), revoked, or fails authentication */
  fi
}

/* ================================================================ device */

/* DeviceEngine.findAcceptance: the relay answers eth_getLogs with any log it can build. */
#ifdef MUT_ACC_LOG
/* mutant: the device trusts the relay's log filter: any KeyAccepted log that carries a valid
   signature of R (over that log's own epoch and proof) activates the pending K */
#define ACCEPTANCE_VERIFIES (rSigned[1] != 0 || rSigned[MAXE] != 0)
#define ACCEPTED_K dPK
#elif defined(MUT_ACC_NOSIG)
/* variant: proof compared with its own, signature not checked: the log's proof may come from R's
   signed acceptance or from any K the attacker knows */
#define ACCEPTANCE_VERIFIES (rSigned[dPE] == dPK || (attK & BIT(dPK)) != 0)
#define ACCEPTED_K dPK
#else
/* as implemented: epoch == pending, proof == proof(K, epoch), and the EIP-712 KeyAcceptance
   signature over (D, R, epoch, proof) recovers to the pinned R: of all the logs the attacker can
   build (R's signed acceptances with any topics, or its own signature over proofs of keys it
   knows), only R's acceptance of (pending epoch, pending K) passes */
#define ACCEPTANCE_VERIFIES (rSigned[dPE] != 0 && (rSigned[dPE] == dPK || rSigned[dPE] == dSupK))
#define ACCEPTED_K rSigned[dPE] /* the pending K, or the superseded one if that earlier offer is the accepted one */
#endif

inline activate() {
  dPK = ACCEPTED_K; /* the K whose proof the verified acceptance carries (pending or superseded) */
  printf("D   activates epoch %d K%d\n", dPE, dPK);
  P2_device_activates_only_receiver_accepted_epoch = (!CHECK(2) || (rSigned[dPE] == dPK && rK[dPE] == dPK));
  assert(P2_device_activates_only_receiver_accepted_epoch); P2_device_activates_only_receiver_accepted_epoch = 0;
#ifdef LIMIT_CHAIN
  LIMIT_device_activates_only_chain_accepted = chainAcc[dPE];
  assert(LIMIT_device_activates_only_chain_accepted); LIMIT_device_activates_only_chain_accepted = 0;
#endif
  if
  :: dPE == MAXE -> reach(1)
  :: else -> skip
  fi;
  if
  :: restartedPending -> reach(5)
  :: else -> skip
  fi;
  if
  :: dSupK != 0 && dPK != dSupK && evW[dPE] == ER2 -> reach(8) /* a fresh K after a key version change accepted */
  :: dSupK != 0 && dPK == dSupK -> reach(9)                     /* the superseded offer was the accepted one */
  :: else -> skip
  fi;
#ifdef ROT
  /* ghosts for P6 (without ROT nothing leaks, and P1 implies P6) */
  sealK = sealK | BIT(dPK);
  if :: evK[dPE] == dPK && evW[dPE] == ER -> accER = accER | BIT(dPK) :: else -> skip fi;
  checkKnowledge();
#endif
  dAE = dPE; dAK = dPK; dRot = 0;
  dPend = 0; dPE = 0; dPK = 0; dPN = 0; dPSigned = 0; dPW = 0; dSupK = 0;
  dSeqNext = 0; dSeqNextE = 0
}

/* DeviceEngine.reserveSeq + sealReading: the envelope goes to the relay. */
inline seal() {
  if
  :: dSeqNext == 0 || dSeqNextE != dAE ->
       dSeqNextE = dAE;
       if
       :: dSeqE == dAE -> dSeqNext = dSeqHwm + 1
       :: else -> dSeqNext = 1
       fi
  :: else -> skip
  fi;
#ifndef MUT_SEQ_LATE
  if
  :: dSeqNext > dSeqHwm || dSeqE != dAE -> dSeqE = dAE; dSeqHwm = dSeqNext + SEQ_BLOCK - 1 /* persist ahead of use */
  :: else -> skip
  fi;
#endif
  printf("D   seals reading %d: epoch %d seq %d\n", nRid + 1, dAE, dSeqNext);
  P4_no_epoch_nonce_or_seq_reuse = (!CHECK(4) || (seqUsed[dAE] & BIT(dSeqNext)) == 0);
  assert(P4_no_epoch_nonce_or_seq_reuse); P4_no_epoch_nonce_or_seq_reuse = 0;
  seqUsed[dAE] = seqUsed[dAE] | BIT(dSeqNext);
  nRid++; ridE[nRid] = dAE; ridS[nRid] = dSeqNext; ridK[nRid] = dAK;
  dSeqNext++
}

/* DeviceEngine.sign for a pending offer already signed: §5.3, a K is wrapped exactly once, to one
   receiver key: when the verified key differs from the one the pending K was wrapped for, a fresh
   K is drawn for the same epoch and the old one kept (superseded) only to recognise its acceptance. */
inline resignAt(n) {
  if
  :: dRkey != dPW ->
#ifdef MUT_REWRAP
       skip /* mutant: the same K wrapped again for the newer key (the code before issue 15) */
#else
       dSupK = dPK; kgen++; assert(kgen < KA); dPK = kgen
#endif
  :: else -> skip
  fi;
  printf("D   re-signs epoch %d K%d at nonce %d for E%d\n", dPE, dPK, n, dRkey);
  dPN = n; dPW = dRkey; dBcast = 0; ln = 0
}

#ifdef LIVE
#define LYING (!honest && nLie < 2) /* two lies about a spent nonce before the relay turns honest */
#define LIE nLie++
/* LIVE models the nonce lie only: the device leaves an epoch only when the chain shows it rejected
   (a rejection or expiry lie strands the device: the known limit in docs/DECISIONS.md) */
#define ABANDON_OK (honest && cEpoch == dPE && cState == REJECTED)
#else
#define LYING 1
#define LIE skip
#define ABANDON_OK 1
#endif

/* ================================================================ the world */

active proctype world() {
end:
  do
  /* ---- operator / receiver administration (§5.2, §5.6) */
  :: atomic { !cEnrolled && nEnroll < 2 -> cEnrolled = 1; nEnroll++; printf("OP  enroll(R, D)\n") }
#ifndef NOREVOKE
  :: atomic { cEnrolled && nRevoke < 1 -> cEnrolled = 0; cSticky = 1; nRevoke++; printf("OP  revoke(R, D)\n") }
#endif

#ifdef ROT
  /* ---- R rotates its encryption key (§5.1, once): version 2 on chain; later A may learn the retired e1 */
  :: atomic { cVer == 1 -> cVer = 2; printf("R   rotates E: version 2 (E3) on chain\n") }
  :: atomic { cVer == 2 && !leaked -> leakRetired() }
#endif

  /* ---- blocks pass: the offer's TTL runs out */
#ifndef LIVE
  :: atomic { cState == OFFERED && !cExpired -> cExpired = 1; printf("CH  offer of epoch %d expires\n", cEpoch) }
#endif

  /* ---- attacker submits any tx of D it holds, in any order, any time (or never) */
  :: atomic { 0 < nTx && txN[0] == cNonce && !txDropped[0] -> execOffer(0) }
  :: atomic { 1 < nTx && txN[1] == cNonce && !txDropped[1] -> execOffer(1) }
  :: atomic { 2 < nTx && txN[2] == cNonce && !txDropped[2] -> execOffer(2) }
  :: atomic { 3 < nTx && txN[3] == cNonce && !txDropped[3] -> execOffer(3) }
  :: atomic { 4 < nTx && txN[4] == cNonce && !txDropped[4] -> execOffer(4) }
  :: atomic { 5 < nTx && txN[5] == cNonce && !txDropped[5] -> execOffer(5) }
#ifdef LIVE
  /* ---- LIVE: the relay lies (counts, withholding: it may throw a tx away) until it turns honest for
          good; then every device step that reads the relay sees the chain's truth, and the device
          rebroadcasts its pending raw tx (it does every 4 polls) */
  :: atomic { !honest -> honest = 1; dBcast = 0; printf("A   turns honest\n") }
  :: atomic { !honest && 0 < nTx && !txDropped[0] -> txDropped[0] = 1; printf("A   throws away tx 0\n") }
  :: atomic { !honest && 1 < nTx && !txDropped[1] -> txDropped[1] = 1; printf("A   throws away tx 1\n") }
  :: atomic { !honest && 2 < nTx && !txDropped[2] -> txDropped[2] = 1; printf("A   throws away tx 2\n") }
  /* quiescent after honesty (no step of anyone is enabled): the device is active, and no offer of it
     that could still land waits behind a nonce gap */
  :: timeout ->
       hi = 0;
       do
       :: hi < nTx && (txDropped[hi] || txN[hi] <= cNonce || txE[hi] <= cEpoch) -> hi++
       :: hi < nTx && !txDropped[hi] && txN[hi] > cNonce && txE[hi] > cEpoch -> break
       :: hi == nTx -> break
       od;
       LIVE_active_after_honesty = (!honest || (dAE == MAXE && hi == nTx));
       assert(LIVE_active_after_honesty); LIVE_active_after_honesty = 0; hi = 0
#endif

  /* ---- the receiver's own tx lands (its trusted node; it may be delayed, not dropped) */
  :: atomic { rTxKind != 0 && rTxRes == 0 -> execRTx() }

  /* ---- receiver: scan logs at its confirmation depth */
  :: atomic { rScan < cEpoch -> rScan++; if :: rSt[rScan] == R_NONE -> rSt[rScan] = R_SEEN :: else -> skip fi }
  :: atomic { cEnrolled && rDev != RD_ENR -> rDev = RD_ENR }
  :: atomic { !cEnrolled && cSticky && rDev != RD_REV -> rDev = RD_REV }
  /* ---- receiver: advance each row */
  :: atomic { onSeen(1) }
  :: atomic { onKeyStored(1) }
  :: atomic { onRejectPending(1) }
  :: atomic { onSent(1) }
#if MAXE >= 2
  :: atomic { onSeen(2) }
  :: atomic { onKeyStored(2) }
  :: atomic { onRejectPending(2) }
  :: atomic { onSent(2) }
#endif
#if MAXE >= 3
  :: atomic { onSeen(3) }
  :: atomic { onKeyStored(3) }
  :: atomic { onRejectPending(3) }
  :: atomic { onSent(3) }
#endif
#ifdef MUT_RECV_K_LATE
  /* mutant: K persisted only after the acceptance was sent; a restart in between loses it */
  :: atomic { rKDirty[1] && rSt[1] != R_KEY -> rKDirty[1] = 0; printf("R   persists K of epoch 1\n") }
  :: atomic { rKDirty[2] && rSt[2] != R_KEY -> rKDirty[2] = 0; printf("R   persists K of epoch 2\n") }
  :: atomic { nRRestart < 1 && (rKDirty[1] || rKDirty[2]) -> nRRestart++; printf("R   restarts: unpersisted K lost\n");
       if :: rKDirty[1] -> rK[1] = 0; rKDirty[1] = 0 :: else -> skip fi;
       if :: rKDirty[2] -> rK[2] = 0; rKDirty[2] = 0 :: else -> skip fi }
#endif

  /* ---- attacker delivers envelopes to the receiver: as stored (replay), with a rewritten
          header, or sealed under a key it knows */
  :: atomic { nRid >= 1 -> ingest(ridE[1], ridS[1], ridK[1], ridE[1], ridS[1], 1) }
  :: atomic { nRid >= 2 -> ingest(ridE[2], ridS[2], ridK[2], ridE[2], ridS[2], 2) }
  :: atomic { nRid >= 1 -> ingest(ridE[1], ridS[1] + 1, ridK[1], ridE[1], ridS[1], 1) }
  :: atomic { nRid >= 1 && ridE[1] < MAXE -> ingest(ridE[1] + 1, ridS[1], ridK[1], ridE[1], ridS[1], 1) }
#ifndef LIVE
  :: atomic { cEpoch > 0 -> ingest(cEpoch, 1, KA, cEpoch, 1, 0) }
#endif

  /* ---- device: relay says "not enrolled" (engine.ts advance) / "enrolled" again */
#ifndef NOREVOKE
  :: atomic { !dRevoked && (dLastOff > 0 || dAE != 0) -> dRevoked = 1; printf("D   relay: not enrolled -> revoked\n") }
#endif
  /* re-enrolled: offer a new epoch and seal nothing until it is active (§5.6; the active key becomes the previous one) */
  :: atomic { dRevoked -> dRevoked = 0; dRot = 1; dAE = 0; dAK = 0; dSeqNext = 0; dSeqNextE = 0; printf("D   relay: enrolled -> rotate\n") }

  /* ---- device: verifiedReceiverKey: the relay answers with any record it can build; only one
          signed by the pinned R verifies */
  :: atomic { dRkey == 0 -> dRkey = ER; printf("D   verifies R's key record: E1 (version 1)\n") }
  /* R's version 2 record, once R published it (the relay may keep serving the genuine version 1 record) */
  :: atomic { cVer == 2 && dRkey != ER2 -> dRkey = ER2; printf("D   verifies R's key record: E3 (version 2)\n") }
#ifdef MUT_RKEY
  :: atomic { dRkey != EA -> dRkey = EA; printf("D   adopts A's key record: E2\n") } /* mutant: a record signed by A (higher version) accepted */
#endif

  /* ---- device: new epoch: fresh K, pending persisted with lastOffered and nonce in ONE write */
  :: atomic { !dRevoked && !dPend && dRkey != 0 && dLastOff < MAXE && dNextNonce < MAXN ->
#ifdef MUT_PENDING_LATE
       dLastOffSaved = dLastOff; dNextNonceSaved = dNextNonce; dPVol = 1;
#endif
       kgen++; assert(kgen < KA); dPend = 1; dPE = dLastOff + 1; dPK = kgen; dPN = dNextNonce; dPSigned = 0; dPW = 0;
       dLastOff = dPE; dNextNonce++; printf("D   new epoch %d: K%d, nonce %d\n", dPE, dPK, dPN) }
#ifdef LIVE
  /* honest relay, chain count below our next nonce (an own nonce that did not land): the epoch's first
     signature takes that nonce (engine.ts advancePending 'first'); nextNonce stays an upper bound */
  :: atomic { honest && !dRevoked && !dPend && dRkey != 0 && dLastOff < MAXE && cNonce < dNextNonce ->
       kgen++; assert(kgen < KA); dPend = 1; dPE = dLastOff + 1; dPK = kgen; dPN = cNonce; dPSigned = 0; dPW = 0;
       dLastOff = dPE; printf("D   new epoch %d: K%d, nonce %d (the chain's count)\n", dPE, dPK, dPN) }
#endif

  /* ---- device: sign the pending offer (wrap K for the verified key), persist the raw tx */
  :: atomic { !dRevoked && dPend && !dPSigned && dRkey != 0 ->
       dPSigned = 1; dPW = dRkey; dBcast = 0; printf("D   signs offer epoch %d K%d nonce %d for E%d\n", dPE, dPK, dPN, dPW) }
  /* ---- device: broadcast the persisted raw tx (once per boot; rebroadcasts resend the same bytes) */
  :: atomic { !dRevoked && dPend && dPSigned && !dBcast -> dBcast = 1; printf("D   broadcasts nonce %d\n", dPN);
       checkP4tx(dPE, dPK, dPW); relayGetsTx(dPN, dPE, dPK, dPW) }
#ifdef MUT_PENDING_LATE
  /* mutant: the pending record is written only after the broadcast */
  :: atomic { dPVol && dBcast -> dPVol = 0 }
#endif
  /* ---- device: re-sign the pending offer (engine.ts advancePending → sign). The relay's transaction
          count is a free choice, so every branch is enabled:
          spent (count > pending nonce): the next own nonce ('resign'), or an own nonce in between
          that did not land; the verified key version changed: the same nonce ('rekey'); count below
          the pending nonce: that lower nonce ('renonce'). Re-signatures at an already used nonce are
          bounded (MAXLOW). */
  :: atomic { !dRevoked && dPend && dPSigned && dNextNonce < MAXN && LYING -> ln = dNextNonce; dNextNonce++; LIE; resignAt(ln) }
  :: atomic { !dRevoked && dPend && dPSigned && dRkey != dPW -> resignAt(dPN) }
#if defined(LOWNONCE) && !defined(MUT_NO_RENONCE)
  :: atomic { !dRevoked && dPend && dPSigned && dPN + 1 < dNextNonce && nLow < MAXLOW && LYING -> nLow++;
       if :: ln = dPN + 1 :: ln = dNextNonce - 1 fi; resignAt(ln) }
  :: atomic { !dRevoked && dPend && dPSigned && dPN > 0 && nLow < MAXLOW && LYING -> nLow++;
       if :: ln = 0 :: ln = dPN - 1 fi; resignAt(ln) }
#endif
#ifdef LIVE
  /* the same branches once the relay is honest: the count is the chain's (cNonce) */
  :: atomic { honest && !dRevoked && dPend && dPSigned && cNonce > dPN && cEpoch < dPE ->
       if
#ifndef MUT_NO_RENONCE
       :: cNonce < dNextNonce -> ln = cNonce
       :: cNonce >= dNextNonce -> assert(dNextNonce < MAXN); ln = dNextNonce; dNextNonce++
#else
       :: true -> assert(dNextNonce < MAXN); ln = dNextNonce; dNextNonce++ /* the code before issue 15: the next own nonce */
#endif
       fi; resignAt(ln) }
#ifndef MUT_NO_RENONCE
  :: atomic { honest && !dRevoked && dPend && dPSigned && cNonce < dPN -> ln = cNonce; resignAt(ln) }
#endif
#endif
  /* ---- device: relay says the epoch was rejected or expired: leave it, drop its K */
  :: atomic { !dRevoked && dPend && dPSigned && ABANDON_OK -> printf("D   leaves epoch %d (relay: rejected/expired)\n", dPE); dPend = 0; dPE = 0; dPK = 0; dPN = 0; dPSigned = 0; dPW = 0; dSupK = 0 }
  /* ---- device: relay answers eth_getLogs with a KeyAccepted log that verifies: activate */
  :: atomic { !dRevoked && dPend && dPSigned && ACCEPTANCE_VERIFIES -> activate() }

  /* ---- device: seal a reading under the active key and hand it to the relay */
  :: atomic { !dRevoked && dAE != 0 && nRid < MAXR -> seal() }
#ifdef MUT_SEQ_LATE
  /* mutant: the seq high-water mark is written after use, not ahead */
  :: atomic { dAE != 0 && dSeqNextE == dAE && dSeqNext > 1 && (dSeqE != dAE || dSeqHwm < dSeqNext - 1) ->
       dSeqE = dAE; dSeqHwm = dSeqNext - 1 }
#endif

  /* ---- device: power cut: volatile state is lost, persisted records stay */
  :: atomic { nRestart < MAXRESTART ->
       nRestart++; printf("D   power cut\n");
       if :: dPend && dPSigned -> restartedPending = 1 :: else -> skip fi;
       dBcast = 0; dSeqNext = 0; dSeqNextE = 0
#ifdef MUT_PENDING_LATE
       ; if
         :: dPVol -> dPVol = 0; dPend = 0; dPE = 0; dPK = 0; dPN = 0; dPSigned = 0; dPW = 0;
                     dLastOff = dLastOffSaved; dNextNonce = dNextNonceSaved
         :: else -> skip
         fi
#endif
     }
  od
}

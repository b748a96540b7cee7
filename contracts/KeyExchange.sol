// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title iotkx/1 KeyExchange
/// @notice On-chain shared-key exchange between enrolled devices and their receivers (PROTOCOL.md §4, §5).
/// @dev Not upgradeable. Storage is packed for gas: one slot of channel metadata plus one slot for the
///      commitment; the wrapped key lives only in the `KeyOffered` event. Custom errors carry no
///      parameters so their selectors are `keccak("Name()")` in every implementation (§4: the name is normative).
contract KeyExchange {
    // ---------------------------------------------------------------- errors (§4 table)

    /// @notice Caller may not enroll/revoke for this receiver (not the receiver, not its operator; or an
    ///         operator re-enrolling a device the receiver revoked).
    error NotAuthorized();
    /// @notice Device is not (or no longer) enrolled to the receiver.
    error NotEnrolled();
    /// @notice Encryption key is not a 65-byte 0x04 point, or the receiver has no key record.
    error BadKey();
    /// @notice Signature does not recover to the required address, is high-s, has v outside {27,28} or is not 65 bytes.
    error BadSignature();
    /// @notice Epoch is not the next one (offer) or not the stored one (accept/reject).
    error BadEpoch();
    /// @notice Offer names a key version other than the receiver's current one.
    error UnknownKeyVersion();
    /// @notice Channel is not in state `offered`.
    error NotOffered();
    /// @notice Offer's time to live has passed (`block.number > offeredAt + offerTtlBlocks`).
    error OfferExpired();
    /// @notice `keccak(proof)` differs from the stored commitment.
    error BadProof();
    /// @notice Reject reason outside 1–3.
    error BadReason();

    // ---------------------------------------------------------------- events (§4)

    /// @notice A receiver published encryption key `version`.
    /// @param receiver the receiver's account
    /// @param version the new key version (previous + 1, first = 1)
    /// @param encKey 65-byte uncompressed secp256k1 point
    /// @param sig EIP-712 `ReceiverKey` signature by `receiver`
    event ReceiverKeySet(address indexed receiver, uint32 version, bytes encKey, bytes sig);
    /// @notice A receiver allowed or disallowed an operator.
    /// @param receiver the receiver (msg.sender)
    /// @param operator the operator account
    /// @param allowed the new authorisation
    event OperatorSet(address indexed receiver, address indexed operator, bool allowed);
    /// @notice A device was enrolled to a receiver.
    /// @param receiver the receiver
    /// @param device the device account
    /// @param by the receiver or operator who enrolled it
    event DeviceEnrolled(address indexed receiver, address indexed device, address by);
    /// @notice A device was revoked by a receiver or its operator.
    /// @param receiver the receiver
    /// @param device the device account
    /// @param by the receiver or operator who revoked it
    event DeviceRevoked(address indexed receiver, address indexed device, address by);
    /// @notice A device offered a wrapped key for `epoch`.
    /// @param device the device (msg.sender)
    /// @param receiver the receiver it is addressed to
    /// @param epoch the channel epoch of this offer
    /// @param keyVersion the receiver key version `wrappedKey` is encrypted to
    /// @param wrappedKey ECIES(E_R, K) (§2); stored only here
    /// @param commitment keccak(proof)
    event KeyOffered(
        address indexed device, address indexed receiver, uint64 indexed epoch,
        uint32 keyVersion, bytes wrappedKey, bytes32 commitment
    );
    /// @notice The receiver accepted the offer of `epoch`.
    /// @param device the device
    /// @param receiver the receiver (msg.sender)
    /// @param epoch the accepted epoch
    /// @param proof the preimage of the commitment
    /// @param sig EIP-712 `KeyAcceptance` signature by `receiver`
    event KeyAccepted(address indexed device, address indexed receiver, uint64 indexed epoch, bytes32 proof, bytes sig);
    /// @notice The receiver rejected the offer of `epoch`.
    /// @param device the device
    /// @param receiver the receiver (msg.sender)
    /// @param epoch the rejected epoch
    /// @param reason 1 undecryptable, 2 commitment mismatch, 3 policy
    event KeyRejected(address indexed device, address indexed receiver, uint64 indexed epoch, uint8 reason);

    // ---------------------------------------------------------------- constants

    /// @dev Channel states (§4).
    uint8 private constant STATE_OFFERED = 1;
    uint8 private constant STATE_ACCEPTED = 2;
    uint8 private constant STATE_REJECTED = 3;

    /// @dev secp256k1 n / 2 (SEC 2 §2.4.1); signatures with a larger s are refused (EIP-2, §2).
    uint256 private constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @dev EIP-712 type hashes (§2, §5.1, §5.4).
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("iotkx");
    bytes32 private constant VERSION_HASH = keccak256("1");
    bytes32 private constant RECEIVER_KEY_TYPEHASH = keccak256("ReceiverKey(address receiver,uint32 version,bytes encKey)");
    bytes32 private constant KEY_ACCEPTANCE_TYPEHASH =
        keccak256("KeyAcceptance(address device,address receiver,uint64 epoch,bytes32 proof)");

    // ---------------------------------------------------------------- storage

    /// @dev A channel (device, receiver): one packed metadata word + the commitment. The wrapped key is only in
    ///      the event. The word is packed by hand (bit offsets below) so each call does exactly one SLOAD and at
    ///      most one SSTORE of it; Solidity's struct field writes cost extra warm SLOAD/SSTOREs here (measured).
    ///        bits   0..7    enrolled (0/1)
    ///        bits   8..15   revoked (0/1), sticky: once revoked from a receiver, only that receiver may enroll
    ///                       the device again (§4 NotAuthorized, §5.6)
    ///        bits  16..23   state (0 none, 1 offered, 2 accepted, 3 rejected)
    ///        bits  24..55   keyVersion (uint32)
    ///        bits  56..119  epoch (uint64)
    ///        bits 120..183  offeredAt (uint64 block number)
    ///        bits 184..247  acceptedAt (uint64 block number)
    struct Channel {
        uint256 meta;
        bytes32 commitment;
    }

    uint256 private constant ENROLLED = 1;
    uint256 private constant REVOKED = 1 << 8;
    uint256 private constant STATE_SHIFT = 16;
    uint256 private constant VERSION_SHIFT = 24;
    uint256 private constant EPOCH_SHIFT = 56;
    uint256 private constant OFFERED_AT_SHIFT = 120;
    uint256 private constant ACCEPTED_AT_SHIFT = 184;
    uint256 private constant U8 = 0xff;
    uint256 private constant U64 = 0xffffffffffffffff;

    /// @dev Receiver key record: slot 0 = version + v; encKey stored as its X, Y (the 0x04 prefix is implied);
    ///      sig as r, s. Five slots, returned verbatim by `receiverKey`.
    struct ReceiverKeyRecord {
        uint32 version;
        uint8 v;
        bytes32 x;
        bytes32 y;
        bytes32 r;
        bytes32 s;
    }

    /// @notice Blocks an offer stays acceptable (§4); chosen per deployment.
    /// @return the offer time to live in blocks
    uint64 public immutable offerTtlBlocks;

    uint256 private immutable _cachedChainId;
    address private immutable _cachedThis;
    bytes32 private immutable _cachedDomainSeparator;

    mapping(address receiver => ReceiverKeyRecord) private _keys;
    mapping(address receiver => mapping(address operator => bool)) private _operators;
    /// @dev Keyed by keccak(device, receiver): one hash per access instead of two nested ones.
    mapping(bytes32 key => Channel) private _channels;

    /// @notice Deploys the exchange.
    /// @param offerTtlBlocks_ blocks after `offeredAt` during which an offer can be accepted
    constructor(uint64 offerTtlBlocks_) {
        offerTtlBlocks = offerTtlBlocks_;
        _cachedChainId = block.chainid;
        _cachedThis = address(this);
        _cachedDomainSeparator = _buildDomainSeparator();
    }

    // ---------------------------------------------------------------- receivers and operators

    /// @notice Publishes the caller's encryption key as version current + 1 (§5.1).
    /// @param encKey 65-byte uncompressed point (0x04 || X || Y)
    /// @param sig EIP-712 `ReceiverKey(receiver = msg.sender, version, encKey)` signature, r || s || v
    function setReceiverKey(bytes calldata encKey, bytes calldata sig) external {
        if (encKey.length != 65 || encKey[0] != 0x04) revert BadKey();
        ReceiverKeyRecord storage rec = _keys[msg.sender];
        uint32 version = rec.version + 1;
        bytes32 structHash = keccak256(abi.encode(RECEIVER_KEY_TYPEHASH, msg.sender, version, keccak256(encKey)));
        (bytes32 r, bytes32 s, uint8 v) = _checkSignature(structHash, sig);
        bytes32 x;
        bytes32 y;
        assembly ("memory-safe") {
            x := calldataload(add(encKey.offset, 1))
            y := calldataload(add(encKey.offset, 33))
        }
        rec.version = version;
        rec.v = v;
        rec.x = x;
        rec.y = y;
        rec.r = r;
        rec.s = s;
        emit ReceiverKeySet(msg.sender, version, encKey, sig);
    }

    /// @notice Allows or disallows `operator` to enroll and revoke devices for the caller.
    /// @dev Always edits msg.sender's own set: operators cannot appoint operators.
    /// @param operator the operator account
    /// @param allowed true to authorise, false to remove (its past enrolments stay)
    function setOperator(address operator, bool allowed) external {
        _operators[msg.sender][operator] = allowed;
        emit OperatorSet(msg.sender, operator, allowed);
    }

    /// @notice Enrolls `device` to `receiver` (§5.2). Idempotent for an enrolled device.
    /// @dev A device revoked from `receiver` may be enrolled again only by `receiver` itself; its epoch and
    ///      state are kept so the next offer continues at stored epoch + 1 (§5.6).
    /// @param receiver the receiver the device reports to
    /// @param device the device account
    function enroll(address receiver, address device) external {
        Channel storage c = _channels[_key(device, receiver)];
        uint256 w = c.meta;
        if (msg.sender != receiver && (!_operators[receiver][msg.sender] || w & REVOKED != 0)) revert NotAuthorized();
        c.meta = w | ENROLLED;
        emit DeviceEnrolled(receiver, device, msg.sender);
    }

    /// @notice Revokes `device` from `receiver` (§5.6): its offers and acceptances then revert with NotEnrolled.
    /// @param receiver the receiver
    /// @param device the enrolled device
    function revoke(address receiver, address device) external {
        if (msg.sender != receiver && !_operators[receiver][msg.sender]) revert NotAuthorized();
        Channel storage c = _channels[_key(device, receiver)];
        uint256 w = c.meta;
        if (w & ENROLLED == 0) revert NotEnrolled();
        c.meta = (w & ~ENROLLED) | REVOKED;
        emit DeviceRevoked(receiver, device, msg.sender);
    }

    // ---------------------------------------------------------------- devices

    /// @notice Offers a fresh key for the next epoch of channel (msg.sender, receiver) (§5.3); supersedes any pending offer.
    /// @dev Checks in order: NotEnrolled, BadKey (no key record), UnknownKeyVersion, BadEpoch. `acceptedAt` keeps
    ///      the block of the last acceptance.
    /// @param receiver the receiver the key is for
    /// @param epoch stored epoch + 1
    /// @param keyVersion the receiver's current key version
    /// @param wrappedKey ECIES(E_R, K), emitted only
    /// @param commitment keccak(proof)
    function offerKey(address receiver, uint64 epoch, uint32 keyVersion, bytes calldata wrappedKey, bytes32 commitment)
        external
    {
        Channel storage c = _channels[_key(msg.sender, receiver)];
        uint256 w = c.meta;
        if (w & ENROLLED == 0) revert NotEnrolled();
        uint32 current = _keys[receiver].version;
        if (current == 0) revert BadKey();
        if (keyVersion != current) revert UnknownKeyVersion();
        // uint256 arithmetic: an epoch at 2^64 - 1 has no successor and fails as BadEpoch, not as a panic.
        if (uint256(epoch) != ((w >> EPOCH_SHIFT) & U64) + 1) revert BadEpoch();
        // Keep enrolled, revoked and acceptedAt; replace state, keyVersion, epoch, offeredAt.
        c.meta = (w & (U8 | (U8 << 8) | (U64 << ACCEPTED_AT_SHIFT)))
            | (uint256(STATE_OFFERED) << STATE_SHIFT)
            | (uint256(keyVersion) << VERSION_SHIFT)
            | (uint256(epoch) << EPOCH_SHIFT)
            | ((block.number & U64) << OFFERED_AT_SHIFT);
        c.commitment = commitment;
        emit KeyOffered(msg.sender, receiver, epoch, keyVersion, wrappedKey, commitment);
    }

    // ---------------------------------------------------------------- receivers

    /// @notice Accepts the pending offer of channel (device, msg.sender) (§5.4).
    /// @dev Checks in order: NotEnrolled, NotOffered, BadEpoch, OfferExpired, BadProof, BadSignature.
    /// @param device the device whose offer is accepted
    /// @param epoch the stored epoch
    /// @param proof preimage of the stored commitment
    /// @param sig EIP-712 `KeyAcceptance(device, msg.sender, epoch, proof)` signature by msg.sender, r || s || v
    function acceptKey(address device, uint64 epoch, bytes32 proof, bytes calldata sig) external {
        Channel storage c = _channels[_key(device, msg.sender)];
        uint256 w = c.meta;
        if (w & ENROLLED == 0) revert NotEnrolled();
        if ((w >> STATE_SHIFT) & U8 != STATE_OFFERED) revert NotOffered();
        if (epoch != (w >> EPOCH_SHIFT) & U64) revert BadEpoch();
        if (block.number > ((w >> OFFERED_AT_SHIFT) & U64) + offerTtlBlocks) revert OfferExpired();
        if (keccak256(abi.encode(proof)) != c.commitment) revert BadProof();
        _checkSignature(keccak256(abi.encode(KEY_ACCEPTANCE_TYPEHASH, device, msg.sender, epoch, proof)), sig);
        c.meta = (w & ~((U8 << STATE_SHIFT) | (U64 << ACCEPTED_AT_SHIFT)))
            | (uint256(STATE_ACCEPTED) << STATE_SHIFT)
            | ((block.number & U64) << ACCEPTED_AT_SHIFT);
        emit KeyAccepted(device, msg.sender, epoch, proof, sig);
    }

    /// @notice Rejects the pending offer of channel (device, msg.sender) (§5.4); expired offers and offers of
    ///         revoked devices may be rejected too.
    /// @dev Checks in order: BadReason, NotOffered, BadEpoch.
    /// @param device the device whose offer is rejected
    /// @param epoch the stored epoch
    /// @param reason 1 undecryptable, 2 commitment mismatch, 3 policy
    function rejectKey(address device, uint64 epoch, uint8 reason) external {
        if (reason == 0 || reason > 3) revert BadReason();
        Channel storage c = _channels[_key(device, msg.sender)];
        uint256 w = c.meta;
        if ((w >> STATE_SHIFT) & U8 != STATE_OFFERED) revert NotOffered();
        if (epoch != (w >> EPOCH_SHIFT) & U64) revert BadEpoch();
        c.meta = (w & ~(U8 << STATE_SHIFT)) | (uint256(STATE_REJECTED) << STATE_SHIFT);
        emit KeyRejected(device, msg.sender, epoch, reason);
    }

    // ---------------------------------------------------------------- views

    /// @notice The receiver's current encryption key record (§5.1); empty values and version 0 if none.
    /// @param receiver the receiver
    /// @return encKey 65-byte uncompressed point, or empty
    /// @return version current key version (0 = no record)
    /// @return sig the receiver's EIP-712 `ReceiverKey` signature (r || s || v), or empty
    function receiverKey(address receiver) external view returns (bytes memory encKey, uint32 version, bytes memory sig) {
        ReceiverKeyRecord storage rec = _keys[receiver];
        version = rec.version;
        if (version != 0) {
            encKey = abi.encodePacked(bytes1(0x04), rec.x, rec.y);
            sig = abi.encodePacked(rec.r, rec.s, rec.v);
        }
    }

    /// @notice State of channel (device, receiver) (§4).
    /// @param device the device
    /// @param receiver the receiver
    /// @return enrolled whether the device is currently enrolled
    /// @return epoch the latest offered epoch (0 before the first offer)
    /// @return state 0 none, 1 offered, 2 accepted, 3 rejected
    /// @return keyVersion receiver key version of the latest offer
    /// @return commitment commitment of the latest offer
    /// @return offeredAt block number of the latest offer
    /// @return acceptedAt block number of the latest acceptance (0 if none)
    function channel(address device, address receiver)
        external
        view
        returns (
            bool enrolled,
            uint64 epoch,
            uint8 state,
            uint32 keyVersion,
            bytes32 commitment,
            uint64 offeredAt,
            uint64 acceptedAt
        )
    {
        Channel storage c = _channels[_key(device, receiver)];
        uint256 w = c.meta;
        enrolled = w & ENROLLED != 0;
        epoch = uint64(w >> EPOCH_SHIFT);
        state = uint8(w >> STATE_SHIFT);
        keyVersion = uint32(w >> VERSION_SHIFT);
        commitment = c.commitment;
        offeredAt = uint64(w >> OFFERED_AT_SHIFT);
        acceptedAt = uint64(w >> ACCEPTED_AT_SHIFT);
    }

    /// @notice Whether `operator` may enroll and revoke devices for `receiver`.
    /// @param receiver the receiver
    /// @param operator the candidate operator
    /// @return allowed the current authorisation
    function isOperator(address receiver, address operator) external view returns (bool allowed) {
        return _operators[receiver][operator];
    }

    // ---------------------------------------------------------------- internals

    /// @dev Channel key: keccak(device || receiver), hashed in scratch space.
    function _key(address device, address receiver) private pure returns (bytes32 k) {
        assembly ("memory-safe") {
            mstore(0x00, device)
            mstore(0x20, receiver)
            k := keccak256(0x00, 0x40)
        }
    }

    /// @dev EIP-712 domain separator, recomputed if the chain id changed (fork) or under delegatecall.
    function _domainSeparator() private view returns (bytes32) {
        if (block.chainid == _cachedChainId && address(this) == _cachedThis) return _cachedDomainSeparator;
        return _buildDomainSeparator();
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @dev Reverts BadSignature unless `sig` (r || s || v, 65 bytes, low s, v ∈ {27, 28}) over the EIP-712
    ///      digest of `structHash` recovers to msg.sender. Returns the parts for storage.
    function _checkSignature(bytes32 structHash, bytes calldata sig) private view returns (bytes32 r, bytes32 s, uint8 v) {
        if (sig.length != 65) revert BadSignature();
        assembly ("memory-safe") {
            r := calldataload(sig.offset)
            s := calldataload(add(sig.offset, 32))
            v := byte(0, calldataload(add(sig.offset, 64)))
        }
        if (uint256(s) > HALF_N || (v != 27 && v != 28)) revert BadSignature();
        bytes32 digest = keccak256(abi.encodePacked(hex"1901", _domainSeparator(), structHash));
        // ecrecover yields address(0) on failure; msg.sender is never zero.
        if (ecrecover(digest, v, r, s) != msg.sender) revert BadSignature();
    }
}

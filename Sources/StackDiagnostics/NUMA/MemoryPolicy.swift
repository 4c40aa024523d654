import CNuma
import Glibc
import StackAllocators

/// The NUMA policy the kernel holds for one address, read back with get_mempolicy(MPOL_F_ADDR), which
/// (unlike MPOL_F_NODE) does not fault the page in. Checks compare it with what the allocator claims.
package struct MemoryPolicy: Equatable, CustomStringConvertible {
    /// MPOL_DEFAULT, MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE, ... (mode flags masked off).
    package let mode: Int32
    /// The nodes of the policy's mask.
    package let nodes: [Int]

    /// Nodes the mask can hold: more than any kernel's MAX_NUMNODES (1024), as get_mempolicy requires.
    private static let maskBits = 4096

    package init(mode: Int32, nodes: [Int]) {
        self.mode = mode
        self.nodes = nodes
    }

    /// The policy of the VMA holding `address`.
    package init(at address: UInt) throws {
        var mode: Int32 = 0
        var mask = [UInt](repeating: 0, count: Self.maskBits / UInt.bitWidth)
        let result = mask.withUnsafeMutableBufferPointer { words in
            get_mempolicy(&mode, words.baseAddress, UInt(Self.maskBits), UnsafeMutableRawPointer(bitPattern: address), UInt32(MPOL_F_ADDR))
        }
        guard result == 0 else {
            throw CheckError(description: "get_mempolicy(MPOL_F_ADDR) at 0x\(String(address, radix: 16)): errno \(errno) "
                + "(ENOSYS: this kernel lacks CONFIG_NUMA; EPERM: a seccomp profile forbids it)")
        }
        self.mode = mode & 0xff
        nodes = (0..<Self.maskBits).filter { mask[$0 / UInt.bitWidth] & (1 << UInt($0 % UInt.bitWidth)) != 0 }
    }

    package var description: String {
        let name = switch mode {
        case Int32(MPOL_DEFAULT): "MPOL_DEFAULT"
        case Int32(MPOL_PREFERRED): "MPOL_PREFERRED"
        case Int32(MPOL_BIND): "MPOL_BIND"
        case Int32(MPOL_INTERLEAVE): "MPOL_INTERLEAVE"
        default: "mode \(mode)"
        }
        return nodes.isEmpty ? name : "\(name) nodes \(nodes.map(String.init).joined(separator: ","))"
    }
}

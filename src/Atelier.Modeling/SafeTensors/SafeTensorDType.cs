namespace Atelier.Modeling.SafeTensors;

/// <summary>The element types of the safetensors format.</summary>
public enum SafeTensorDType
{
    /// <summary>Boolean, one byte.</summary>
    Bool,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>8-bit float, 5 exponent bits.</summary>
    F8E5M2,
    /// <summary>8-bit float, 4 exponent bits.</summary>
    F8E4M3,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>IEEE half precision.</summary>
    F16,
    /// <summary>bfloat16 (the upper half of a float32).</summary>
    BF16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>IEEE single precision.</summary>
    F32,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
    /// <summary>IEEE double precision.</summary>
    F64,
}

/// <summary>Names and sizes of <see cref="SafeTensorDType"/> values as the format spells them.</summary>
public static class SafeTensorDTypes
{
    /// <summary>Size of one element in bytes.</summary>
    public static int SizeOf(SafeTensorDType t) => t switch
    {
        SafeTensorDType.Bool or SafeTensorDType.U8 or SafeTensorDType.I8 or SafeTensorDType.F8E5M2 or SafeTensorDType.F8E4M3 => 1,
        SafeTensorDType.I16 or SafeTensorDType.U16 or SafeTensorDType.F16 or SafeTensorDType.BF16 => 2,
        SafeTensorDType.I32 or SafeTensorDType.U32 or SafeTensorDType.F32 => 4,
        _ => 8,
    };

    /// <summary>The header spelling (<c>F32</c>, <c>BF16</c>, ...).</summary>
    public static string Name(SafeTensorDType t) => t switch
    {
        SafeTensorDType.Bool => "BOOL",
        SafeTensorDType.F8E5M2 => "F8_E5M2",
        SafeTensorDType.F8E4M3 => "F8_E4M3",
        _ => t.ToString(),
    };

    /// <summary>Parses a header spelling; false for an unknown one.</summary>
    public static bool TryParse(string name, out SafeTensorDType type)
    {
        switch (name)
        {
            case "BOOL": type = SafeTensorDType.Bool; return true;
            case "U8": type = SafeTensorDType.U8; return true;
            case "I8": type = SafeTensorDType.I8; return true;
            case "F8_E5M2": type = SafeTensorDType.F8E5M2; return true;
            case "F8_E4M3": type = SafeTensorDType.F8E4M3; return true;
            case "I16": type = SafeTensorDType.I16; return true;
            case "U16": type = SafeTensorDType.U16; return true;
            case "F16": type = SafeTensorDType.F16; return true;
            case "BF16": type = SafeTensorDType.BF16; return true;
            case "I32": type = SafeTensorDType.I32; return true;
            case "U32": type = SafeTensorDType.U32; return true;
            case "F32": type = SafeTensorDType.F32; return true;
            case "I64": type = SafeTensorDType.I64; return true;
            case "U64": type = SafeTensorDType.U64; return true;
            case "F64": type = SafeTensorDType.F64; return true;
            default: type = default; return false;
        }
    }

    /// <summary>Rounds a float32 to bfloat16 bits (round to nearest even; NaN stays NaN).</summary>
    public static ushort ToBFloat16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x0040);
        }

        var rounding = 0x7FFFu + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>Widens bfloat16 bits to float32 (exact).</summary>
    public static float FromBFloat16(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
}

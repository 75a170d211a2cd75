using Atelier.Core.Errors;

namespace Atelier.Modeling.SafeTensors;

/// <summary>A safetensors file is malformed or hostile: the message says what is wrong and where.</summary>
public sealed class SafeTensorsFormatException(string message, Exception? inner = null) : AtelierException(message, inner)
{
    /// <inheritdoc />
    public override int StatusCode => 422;

    /// <inheritdoc />
    public override string Code => "invalid_safetensors";
}

/// <summary>A model directory is not a valid Mistral consolidated model (bad params.json, missing or misshapen tensors).</summary>
public sealed class ModelFormatException(string message, Exception? inner = null) : AtelierException(message, inner)
{
    /// <inheritdoc />
    public override int StatusCode => 422;

    /// <inheritdoc />
    public override string Code => "invalid_model";
}

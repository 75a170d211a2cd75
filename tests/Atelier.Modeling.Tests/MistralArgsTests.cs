using Atelier.Modeling.Mistral;

namespace Atelier.Modeling.Tests;

public class MistralArgsTests
{
    [Fact]
    public void ParamsJson_WithoutRopeTheta_UsesTheBaseMistral7Bv01WasTrainedWith()
    {
        // Mistral 7B v0.1's params.json as released: no rope_theta, trained with a RoPE base of 10,000.
        var args = MistralArgs.Parse("""{"dim":4096,"n_layers":32,"head_dim":128,"hidden_dim":14336,"n_heads":32,"n_kv_heads":8,"norm_eps":1e-05,"sliding_window":4096,"vocab_size":32000}""");

        Assert.Equal(10_000.0, args.RopeTheta);
    }
}
